"""Code shipped with an application (runtime_env): packing (pure), and on a
real cluster: workers import code that is not on their import path, two apps
ship different versions of one module, an unchanged folder is not uploaded
again, a tampered package is refused."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import serve
from actors.serve import DeployFailedError, PackageError
from actors.serve._api import current_session
from actors.serve._packages import check_runtime_env, pack_folder, unpack
from protocol import UploadPackage

GREETER = """
from actors import serve


@serve.deployment(num_replicas=1)
class Greeter:
    def __call__(self) -> str:
        return "{text}"
"""


def greeter_folder(root: Path, text: str) -> Path:
    folder = root / text
    folder.mkdir()
    (folder / "shipped_greeter.py").write_text(GREETER.format(text=text))
    return folder


def run_from(folder: Path, name: str, **options: Any) -> Any:
    """Import ``shipped_greeter`` from ``folder`` (as a user's script would, afresh)
    and deploy it with ``folder`` as its working_dir."""
    sys.modules.pop("shipped_greeter", None)
    sys.path.insert(0, str(folder))
    try:
        import shipped_greeter  # type: ignore[import-not-found]

        deployment = shipped_greeter.Greeter.options(**options) if options else shipped_greeter.Greeter
        return serve.run(deployment.bind(), name=name, route_prefix=None, runtime_env={"working_dir": str(folder)}, timeout_s=60)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("shipped_greeter", None)


def uploaded_bytes() -> int:
    return int(serve.controller_stats()["packages"]["uploaded_bytes"])


def test_packing_is_deterministic_and_leaves_out_excludes_gitignore_and_git(tmp_path: Path) -> None:
    folder = tmp_path / "code"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref")
    (folder / "model.py").write_text("x = 1\n")
    (folder / "big.ckpt").write_bytes(b"0" * 1000)
    (folder / "notes.tmp").write_text("scratch")
    (folder / ".gitignore").write_text("*.tmp\n")
    first = pack_folder(folder, ["*.ckpt"], 10**6)
    assert pack_folder(folder, ["*.ckpt"], 10**6).digest == first.digest, "same content, same digest"
    import io
    import zipfile

    assert sorted(zipfile.ZipFile(io.BytesIO(first.data)).namelist()) == [".gitignore", "model.py"]
    (folder / "model.py").write_text("x = 2\n")
    assert pack_folder(folder, ["*.ckpt"], 10**6).digest != first.digest


def test_bad_runtime_envs_are_one_line_errors_before_anything_is_deployed(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"does not exist"):
        pack_folder(tmp_path / "nope", [], 10**6)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "blob.bin").write_bytes(os.urandom(5000))
    with pytest.raises(PackageError, match=r"over the 0 MiB limit"):
        pack_folder(tmp_path / "big", [], 1000)
    (tmp_path / "broken").mkdir()
    os.symlink(tmp_path / "missing", tmp_path / "broken" / "dangling.py")
    with pytest.raises(PackageError, match=r"cannot read .*dangling.py"):
        pack_folder(tmp_path / "broken", [], 10**6)
    with pytest.raises(PackageError, match=r"'pip' is not supported by corral"):
        check_runtime_env({"pip": ["requests"]})
    with pytest.raises(PackageError, match=r"unknown key 'working'"):
        check_runtime_env({"working": "."})


def test_a_package_that_does_not_match_its_digest_is_refused_on_unpacking(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("x = 1\n")
    package = pack_folder(tmp_path / "code", [], 10**6)
    with pytest.raises(PackageError, match="failed its hash check"):
        unpack(package.data + b"tampered", package.digest, tmp_path / "cache")
    assert (unpack(package.data, package.digest, tmp_path / "cache") / "m.py").read_text() == "x = 1\n"


def test_shipped_code_runs_on_workers_without_it_on_their_path_and_two_versions_do_not_clash(
        serve_cluster: Any, tmp_path: Path) -> None:
    v1, v2 = greeter_folder(tmp_path, "v1"), greeter_folder(tmp_path, "v2")
    first = run_from(v1, "g1")
    assert first.remote().result(timeout_s=10) == "v1"
    sent = uploaded_bytes()
    assert sent > 0
    second = run_from(v2, "g2")
    assert second.remote().result(timeout_s=10) == "v2" and first.remote().result(timeout_s=10) == "v1"
    after_v2 = uploaded_bytes()
    again = run_from(v1, "g3")
    assert again.remote().result(timeout_s=10) == "v1"
    assert uploaded_bytes() == after_v2, "an unchanged folder is not uploaded again"
    for name in ("g1", "g2", "g3"):
        serve.delete(name)


def test_a_tampered_package_is_refused_by_the_worker_and_the_deploy_fails_saying_so(serve_cluster: Any, tmp_path: Path) -> None:
    v3 = greeter_folder(tmp_path, "v3")
    package = pack_folder(v3, [], 10**6)
    session = current_session()
    with pytest.raises(Exception, match="refused"):
        session.ask_controller(UploadPackage(package.digest, package.data + b"x"))
    session.ask_controller(UploadPackage(package.digest, package.data))
    controller = pykka.ActorRegistry.get_by_class_name("Controller")[0]._actor_weakref()  # the embedded head's
    controller.packages._packages[package.digest] = package.data[:100] + bytes([package.data[100] ^ 0xFF]) + package.data[101:]
    with pytest.raises(DeployFailedError, match="failed its hash check"):
        run_from(v3, "tampered")
    serve.delete("tampered")


def test_runtime_env_with_thread_mode_replicas_is_refused(serve_cluster: Any, tmp_path: Path) -> None:
    v4 = greeter_folder(tmp_path, "v4")
    with pytest.raises(PackageError, match="needs replicas in their own processes"):
        run_from(v4, "threads", isolation="thread")


def test_a_worker_removes_packages_no_replica_has_used_for_a_while(tmp_path: Path) -> None:
    from actors.serve.worker._package_cache import PackageCache

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("x = 1\n")
    package = pack_folder(tmp_path / "code", [], 10**6)
    cache = PackageCache(tmp_path / "cache", lambda digest: package.data, keep_unused_s=0.0)
    [folder] = cache.folders([package.digest])
    assert cache.clean({package.digest}) == [] and Path(folder).is_dir(), "in use: kept"
    assert cache.clean(set()) == [package.digest] and not Path(folder).exists()
    assert cache.fetched_bytes == len(package.data)


CONFIG = """
applications:
  - name: shipped
    import_path: shipped_greeter:Greeter
    route_prefix: null
    runtime_env: {{working_dir: {folder}}}
"""


def test_corral_deploy_ships_the_config_files_working_dir_to_the_cluster(tmp_path: Path) -> None:
    from scripts._cluster_files import cluster_dir, read_head
    from tests.test_cli import corral, free_port

    port = str(free_port())
    out = corral("start", "--port", port, "--workers", "1", "--http-port", "0", "--dashboard-port", "0")
    assert out.returncode == 0, out.stderr
    try:
        greeter_folder(tmp_path, "v5")
        (tmp_path / "app.yaml").write_text(CONFIG.format(folder="v5"))  # relative to the config file's folder
        deployed = corral("deploy", str(tmp_path / "app.yaml"), "--port", port)
        assert deployed.returncode == 0, deployed.stderr
        assert corral("call", "shipped", "--port", port).stdout.strip() == '"v5"'
        (tmp_path / "bad.yaml").write_text(CONFIG.format(folder="nowhere"))
        bad = corral("deploy", str(tmp_path / "bad.yaml"), "--port", port)
        assert bad.returncode == 2 and "working_dir" in bad.stderr and "is not a folder" in bad.stderr
    finally:
        head = read_head(int(port))
        corral("stop", "--port", port)
        shutil.rmtree(cluster_dir(int(port)), ignore_errors=True)
        assert head is not None


def test_a_deployments_own_runtime_env_ships_its_code_and_a_bad_one_is_refused_by_name(serve_cluster: Any, tmp_path: Path) -> None:
    v6 = greeter_folder(tmp_path, "v6")
    sys.modules.pop("shipped_greeter", None)
    sys.path.insert(0, str(v6))
    try:
        import shipped_greeter  # type: ignore[import-not-found]

        shipped = shipped_greeter.Greeter.options(runtime_env={"working_dir": str(v6)})
        handle = serve.run(shipped.bind(), name="own", route_prefix=None, timeout_s=60)
        assert handle.remote().result(timeout_s=10) == "v6"
        with pytest.raises(serve.DeploymentOptionError, match="deployment option runtime_env: 'pip' is not supported"):
            shipped_greeter.Greeter.options(runtime_env={"pip": ["x"]})
    finally:
        sys.path.remove(str(v6))
        sys.modules.pop("shipped_greeter", None)
    serve.delete("own")
