"""The dashboard in a real headless Chromium (Debian's, driven by Playwright),
against a cluster started with ``corral start``. Screenshots of each page are
saved under ``.artifacts/dashboard/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from scripts._cluster_files import read_head
from tests.helpers import interruptible, wait_for
from tests.test_cli import ROOT, cluster, corral  # noqa: F401 (the fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(ROOT) / ".artifacts" / "dashboard"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                reason="no headless browser here: Debian's chromium and Playwright are needed")

APP = """
applications:
  - name: echo
    import_path: tests.serve_apps:Echo
    route_prefix: null
    deployments:
      - name: Echo
        num_replicas: {replicas}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:  # type: ignore[misc]
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def api(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def deploy(port: str, tmp_path: Path, replicas: int) -> None:
    path = tmp_path / f"app{replicas}.yaml"
    path.write_text(APP.format(replicas=replicas))
    out = corral("deploy", str(path), "--port", port)
    assert out.returncode == 0, out.stderr


def test_the_dashboard_shows_the_cluster_apps_replicas_live_charts_logs_and_a_dead_worker(
        cluster: Callable[..., str], browser: Any, tmp_path: Path) -> None:  # noqa: F811
    port = cluster("--workers", "1")
    head = read_head(int(port))
    assert head is not None and head["dashboard"].startswith("http://")
    url = head["dashboard"]
    deploy(port, tmp_path, 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{url}/")
    page.wait_for_selector("#nodes >> text=worker-0", timeout=20_000)
    assert "ALIVE" in page.inner_text("#nodes")
    page.goto(f"{url}/#/applications")
    page.wait_for_selector("#applications >> text=Echo", timeout=20_000)
    assert "HEALTHY" in page.inner_text("#applications")
    page.screenshot(path=str(ARTIFACTS / "applications.png"), full_page=True)

    page.goto(f"{url}/#/applications/echo/Echo")
    page.wait_for_function("document.querySelectorAll('#replicas tbody tr').length === 1 && window.corralCharts"
                           " && window.corralCharts.replicas.data[1].slice(-1)[0] === 1", timeout=20_000)
    page.evaluate("window.stillTheSamePage = true")
    deploy(port, tmp_path, 3)
    page.wait_for_function(
        "document.querySelectorAll('#replicas tbody tr').length === 3 && window.corralCharts"
        " && window.corralCharts.replicas.data[1].slice(-1)[0] === 3", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True, "the page updated without a reload"
    page.screenshot(path=str(ARTIFACTS / "deployment.png"), full_page=True)

    assert corral("call", "echo", '["hello-dashboard"]', "--method", "shout", "--port", port).returncode == 0
    replicas = [r["replica_id"] for r in api(f"{url}/api/applications/echo/deployments/Echo")["replicas"]]
    printed = wait_for(lambda: next((r for r in replicas if any(
        "shouting hello-dashboard" in line for line in api(f"{url}/api/replicas/{r}/logs?tail=50")["lines"])), None),
        20, "the printed line in a replica's log")
    page.click(f"text={printed}")
    page.wait_for_selector("#log >> text=shouting hello-dashboard", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "replica-log.png"), full_page=True)

    out = corral("start", "--join", head["address"], "--port", port)
    assert out.returncode == 0, out.stderr
    pid = int(re.search(r"pid (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    joined = wait_for(lambda: next((n["node_id"] for n in api(f"{url}/api/cluster")["nodes"] if n["node_id"] != "worker-0"), None),
                      20, "the joined worker on the dashboard")
    os.kill(pid, signal.SIGKILL)
    page.goto(f"{url}/")
    page.wait_for_function(f"[...document.querySelectorAll('#nodes tbody tr')].some(r => r.innerText.includes('{joined}')"
                           " && r.innerText.includes('DEAD'))", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "cluster.png"), full_page=True)
    assert errors == [], f"console errors: {errors}"


def test_the_api_answers_404_for_unknown_things_400_for_a_bad_query_and_403_for_a_change_without_the_key(
        cluster: Callable[..., str], tmp_path: Path) -> None:  # noqa: F811
    port = cluster("--workers", "1")
    head = read_head(int(port))
    assert head is not None
    url = head["dashboard"]
    deploy(port, tmp_path, 1)

    def status_of(path: str, method: str = "GET", key: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"{url}{path}", method=method, headers={"X-Corral-Key": key} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()).get("error", "") if method == "GET" else ""
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"]

    wait_for(lambda: api(f"{url}/api/applications"), 20, "the dashboard's next sample to hold the app")
    assert status_of("/api/applications/nope") == (404, "no application 'nope'")
    assert status_of("/api/applications/echo/deployments/Nope") == (404, "no deployment 'Nope' in application 'echo'")
    assert status_of("/api/replicas/nope/logs") == (404, "no replica 'nope'")
    replica = api(f"{url}/api/applications/echo/deployments/Echo")["replicas"][0]["replica_id"]
    assert status_of(f"/api/replicas/{replica}/logs?tail=x") == (400, "tail must be a whole number from 1 to 10000, got 'x'")
    code, message = status_of("/api/applications/echo", "DELETE")
    assert code == 403 and "cluster key" in message
    assert status_of("/api/applications/echo", "DELETE", key="wrong")[0] == 403
    key = (Path(head["logs"]) / "dashboard.key").read_text().strip()
    assert status_of("/api/applications/echo", "DELETE", key=key)[0] == 200
    wait_for(lambda: api(f"{url}/api/applications") == [], 20, "the app deleted")


JOINED_APP = """
applications:
  - name: loud
    import_path: tests.serve_apps:Echo
    route_prefix: null
    deployments:
      - name: Echo
        num_replicas: 1
        actor_options: {resources: {joined: 1}}
"""


def test_corral_logs_reads_replica_logs_of_a_local_and_a_joined_worker(cluster: Callable[..., str], tmp_path: Path) -> None:  # noqa: F811
    port = cluster("--workers", "1")
    head = read_head(int(port))
    assert head is not None
    out = corral("start", "--join", head["address"], "--port", port, "--resources", '{"CPU": 1, "joined": 1}')
    assert out.returncode == 0, out.stderr
    deploy(port, tmp_path, 1)
    (tmp_path / "loud.yaml").write_text(JOINED_APP)
    assert corral("deploy", str(tmp_path / "loud.yaml"), "--port", port).returncode == 0
    for app in ("echo", "loud"):
        assert corral("call", app, f'["from-{app}"]', "--method", "shout", "--port", port).returncode == 0
    status = json.loads(corral("status", "--json", "--port", port).stdout)
    nodes = {app: status["applications"][app]["deployments"]["Echo"]["replicas"][0]["node_id"] for app in ("echo", "loud")}
    assert nodes["echo"] == "worker-0" and nodes["loud"] != "worker-0", nodes
    for app in ("echo", "loud"):
        logs = corral("logs", app, "Echo", "--tail", "20", "--port", port)
        assert logs.returncode == 0 and f"shouting from-{app}" in logs.stdout, logs.stdout + logs.stderr
    missing = corral("logs", "echo", "Nope", "--port", port)
    assert missing.returncode != 0 and "no deployment 'Nope' in application 'echo'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_status_watch_refreshes_until_ctrl_c_and_status_names_the_dashboard_and_log_folder(
        cluster: Callable[..., str], tmp_path: Path) -> None:  # noqa: F811
    import subprocess

    from tests.test_cli import CORRAL, ENV

    port = cluster("--workers", "1")
    head = read_head(int(port))
    assert head is not None
    status = corral("status", "--port", port).stdout
    assert head["dashboard"] in status and head["logs"] in status and head["address"] in status
    watch = subprocess.Popen([*CORRAL, "status", "--watch", "--interval", "0.2", "--port", port], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, preexec_fn=interruptible)
    try:
        deploy(port, tmp_path, 1)
        wait_for(lambda: json.loads(corral("status", "--json", "--port", port).stdout)["applications"], 30, "the app")
        watch.send_signal(signal.SIGINT)
        out, _ = watch.communicate(timeout=20)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate(timeout=10)
    assert watch.returncode == 0 and "worker-0" in out
