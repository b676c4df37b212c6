"""The HTTP ingress, end to end: a real cluster, a real uvicorn proxy, httpx as the client."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from actors import Config, HttpOptions, serve

from . import http_apps
from .helpers import wait_for

HTTP = {"port": 0, "request_timeout_s": 3.0, "max_body_bytes": 1024 * 1024, "routes_refresh_s": 0.2}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    serve.start(workers=1, http_options=HTTP)
    try:
        proxies = wait_for(lambda: serve.status().proxies, 10, "the proxy to report")
        yield proxies[0].url
    finally:
        serve.shutdown()


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=20) as c:
        yield c


@pytest.fixture
def flags(tmp_path: Path) -> str:
    return str(tmp_path)


def test_a_plain_deployment_answers_json_bytes_text_responses_and_null(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="plain", route_prefix="/plain")
    r = client.get("/plain/anything")
    assert (r.status_code, r.headers["content-type"], r.json()) == (200, "application/json", {"json": True, "path": "/plain/anything"})
    r = client.get("/plain/bytes")
    assert (r.headers["content-type"], r.content) == ("application/octet-stream", b"\x00\x01raw")
    r = client.get("/plain/text")
    assert (r.headers["content-type"], r.text) == ("text/plain; charset=utf-8", "plain text")
    r = client.get("/plain/response")
    assert (r.status_code, r.headers["x-custom"], r.json()) == (201, "yes", {"made": "by hand"})
    assert client.get("/plain/none").json() is None


def test_once_it_served_http_the_proxy_loop_does_its_process_io_and_a_request_is_answered_through_it(client: httpx.Client) -> None:
    from actors.serve._api import current_session

    transport = current_session().system._transport

    def io_thread_name() -> str:
        return {t.ident: t.name for t in threading.enumerate()}.get(transport.io_ident, "")

    assert client.get("/-/healthz").status_code in (200, 503)
    wait_for(lambda: io_thread_name() == "http-proxy", 10, "the proxy's loop to take the sockets")
    serve.run(http_apps.Plain.bind(), name="loopio", route_prefix="/loopio")
    assert client.get("/loopio/json").json() == {"json": True, "path": "/loopio/json"}
    serve.delete("loopio")


def test_the_replica_sees_method_body_query_and_the_prefix_as_root_path(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="plain", route_prefix="/plain")
    r = client.post("/plain/x/echo?a=1&b=two", content=b"hello body")
    assert r.json() == {"method": "POST", "body": "hello body", "query": {"a": "1", "b": "two"}, "root_path": "/plain",
                        "path": "/plain/x/echo"}


def test_a_sync_call_method_runs_off_the_event_loop(client: httpx.Client) -> None:
    serve.run(http_apps.SyncPlain.bind(), name="sync", route_prefix="/sync")
    assert client.put("/sync/a").text == "sync PUT /sync/a"


def test_thread_mode_replicas_serve_http_too(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.options(isolation="thread", num_replicas=2).bind(), name="packed", route_prefix="/packed")
    assert client.get("/packed/text").text == "plain text"
    assert client.post("/packed/echo", content=b"b").json()["body"] == "b"


def test_a_function_deployment_serves_http(client: httpx.Client) -> None:
    serve.run(http_apps.hello.bind(), name="fnhttp", route_prefix="/fn")
    assert client.get("/fn", params={"name": "corral"}).text == "hello corral"


def test_the_multiplexed_model_header_names_the_model_the_replica_loads(client: httpx.Client) -> None:
    serve.run(http_apps.HttpModels.bind(), name="httpmodels", route_prefix="/models")
    assert client.get("/models", headers={"serve_multiplexed_model_id": "m7"}).text == "model-m7"
    assert client.get("/models").status_code == 500, "no model id: the loader's ValueError is a 500"


def test_an_exception_in_user_code_is_a_500_without_the_traceback(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="plain", route_prefix="/plain")
    r = client.get("/plain/boom")
    assert r.status_code == 500
    assert "secret detail" not in r.text and "Traceback" not in r.text


def test_a_fastapi_ingress_serves_path_parameters_models_and_its_docs_under_the_prefix(client: httpx.Client) -> None:
    serve.run(http_apps.Api.bind("hello"), name="api", route_prefix="/api")
    assert client.get("/api/items/7", params={"q": "x"}).json() == {"item_id": 7, "q": "x", "greeting": "hello"}
    assert client.post("/api/items", json={"name": "pen", "price": 1.5}).json() == {"created": "pen", "price": 1.5, "by": "hello"}
    bad = client.post("/api/items", json={"name": "pen", "price": "not a number"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "price"]
    assert client.get("/api/items/not-an-int").status_code == 422
    assert client.get("/api/raw").content == b"raw bytes"
    spec = client.get("/api/openapi.json").json()
    assert "/items/{item_id}" in spec["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text


def test_chunks_of_a_stream_arrive_before_the_generator_ends(client: httpx.Client, flags: str) -> None:
    serve.run(http_apps.Ticker.bind(flags), name="ticker", route_prefix="/ticker")
    with client.stream("GET", "/ticker/slow") as r:
        lines = r.iter_lines()
        assert next(lines) == "first"  # the generator now waits for the go-ahead the test gives only now
        assert not (Path(flags) / "closed").exists()
        (Path(flags) / "go").write_text("go")
        assert list(lines) == ["tick 0"]
    assert (Path(flags) / "closed").exists()


def test_a_client_that_disconnects_mid_stream_closes_the_generator_in_the_replica(base_url: str, flags: str) -> None:
    serve.run(http_apps.Ticker.bind(flags), name="ticker", route_prefix="/ticker")
    with httpx.Client(base_url=base_url, timeout=20) as c, c.stream("GET", "/ticker/forever") as r:
        assert next(r.iter_lines()) == "first"
    wait_for(lambda: (Path(flags) / "closed-forever").exists(), 10, "the replica's generator to be closed")


def test_a_request_past_its_timeout_gets_408_and_is_cancelled_in_the_replica(client: httpx.Client, flags: str) -> None:
    serve.run(http_apps.Slow.bind(flags), name="slow", route_prefix="/slow")
    r = client.get("/slow", params={"s": 30, "tag": "timeout"})
    assert r.status_code == 408
    wait_for(lambda: (Path(flags) / "cancelled-timeout").exists(), 10, "the replica's method to be cancelled")
    assert client.get("/slow", params={"s": 0}).text == "slept", "the proxy still serves"


def test_a_client_that_disconnects_mid_request_cancels_the_method(base_url: str, flags: str) -> None:
    serve.run(http_apps.Slow.bind(flags), name="slow", route_prefix="/slow")
    with httpx.Client(base_url=base_url, timeout=0.5) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/slow", params={"s": 30, "tag": "gone"})
    wait_for(lambda: (Path(flags) / "cancelled-gone").exists(), 10, "the replica's method to be cancelled")


def test_a_full_queue_answers_503_with_retry_after(base_url: str, flags: str) -> None:
    serve.run(http_apps.Slow.options(max_ongoing_requests=1, max_queued_requests=0).bind(flags), name="slow", route_prefix="/slow")
    with httpx.Client(base_url=base_url, timeout=20) as c:
        busy = threading.Thread(target=lambda: c.get("/slow", params={"s": 2, "tag": "busy"}))
        busy.start()
        try:
            wait_for(lambda: (Path(flags) / "started-busy").exists(), 10, "the first request to run")
            r = c.get("/slow", params={"s": 0})
            assert (r.status_code, r.headers["retry-after"]) == (503, "1")
            assert "max_queued_requests=0" in r.text
        finally:
            busy.join(10)


def test_an_app_that_failed_to_deploy_answers_503_naming_why(client: httpx.Client) -> None:
    from actors.serve import DeployFailedError

    from . import serve_apps

    with pytest.raises(DeployFailedError):
        serve.run(serve_apps.FailsToStart.bind(), name="broken", route_prefix="/broken")
    r = client.get("/broken/x")
    assert r.status_code == 503 and "DEPLOY_FAILED" in r.text and "cannot load the model file" in r.text
    serve.delete("broken")


def test_unknown_routes_get_404_and_oversized_bodies_413(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="plain", route_prefix="/plain")
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.get("/plainx").status_code == 404, "a prefix covers whole segments only"
    assert client.post("/plain/echo", content=b"x" * (1024 * 1024 + 1)).status_code == 413


def test_routes_and_health_are_listed_and_follow_deploys_moves_and_deletes(client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="one", route_prefix="/one")
    serve.run(http_apps.SyncPlain.bind(), name="two", route_prefix="/two")
    assert client.get("/-/healthz").status_code == 200
    routes = client.get("/-/routes").json()
    assert routes["/one"] == "one" and routes["/two"] == "two"
    assert client.get("/two/x").text == "sync GET /two/x"
    serve.run(http_apps.SyncPlain.bind(), name="two", route_prefix="/moved")
    wait_for(lambda: client.get("/two/x").status_code == 404, 5, "the old prefix to be dropped")
    assert client.get("/moved/x").text == "sync GET /moved/x"
    serve.delete("one")
    wait_for(lambda: client.get("/one/x").status_code == 404, 5, "the deleted app's route to go")
    assert serve.status().applications["two"].route_prefix == "/moved"


def test_two_apps_cannot_claim_one_prefix_and_a_bad_prefix_is_refused_by_name() -> None:
    serve.run(http_apps.Plain.bind(), name="first", route_prefix="/shared")
    with pytest.raises(ValueError, match="route_prefix '/shared' of application 'second' is already served by application 'first'"):
        serve.run(http_apps.Plain.bind(), name="second", route_prefix="/shared")
    with pytest.raises(ValueError, match="route_prefix: expected None or a string starting with '/'"):
        serve.run(http_apps.Plain.bind(), name="third", route_prefix="nope")
    with pytest.raises(ValueError, match="must not end with '/'"):
        serve.run(http_apps.Plain.bind(), name="third", route_prefix="/x/")
    serve.delete("first")


def test_garbage_on_the_http_port_does_not_stop_the_proxy(base_url: str, client: httpx.Client) -> None:
    serve.run(http_apps.Plain.bind(), name="plain", route_prefix="/plain")
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    for junk in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n", b"GET /plain/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(junk)
            try:
                s.recv(4096)
            except OSError:
                pass
    assert client.get("/plain/text").text == "plain text"


def test_http_options_are_validated_by_name() -> None:
    with pytest.raises(ValueError, match="http_options.proxy_location"):
        HttpOptions(proxy_location="Somewhere")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['prot'\]"):
        HttpOptions.from_dict({"prot": 1})
    with pytest.raises(ValueError, match="http_options.port"):
        Config(http=HttpOptions(port=70000))


def test_a_busy_port_fails_serve_start_with_a_clear_error(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    from actors.serve.client._proxy_server import listen

    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}.*proxy_location='Disabled'"):
        listen(HttpOptions(port=port), share_port=False)
