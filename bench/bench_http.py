"""HTTP bench: wrk against a bare uvicorn + Starlette hello world (the floor),
corral's HTTP proxy to a no-op deployment (1 and 2 replicas), the time to the
first chunk of a stream, and Ray Serve's HTTP proxy on the same no-op
deployment when ``ray[serve]`` is importable (never a dependency), in one run.

    python bench/bench_http.py [--quick] [--json FILE]

Needs ``wrk`` (Debian package ``wrk``; ``.ci/run`` installs it as root).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from actors import serve  # noqa: E402
from bench._apps import HttpNoop, HttpStream  # noqa: E402
from bench._common import Child, median, parse_args, print_table, write_json  # noqa: E402

CONNECTIONS = 64
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: int) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) of one wrk run at CONNECTIONS connections."""
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses from {url}")
    return {"rps": rps, "p50_ms": lat.get("50", 0.0), "p99_ms": lat.get("99", 0.0)}


def best_of(url: str, seconds: int, rounds: int) -> dict[str, float]:
    """The run with the median requests/s of ``rounds`` runs (after a warm-up)."""
    wrk(url, 1)
    runs = sorted((wrk(url, seconds) for _ in range(rounds)), key=lambda r: r["rps"])
    return runs[len(runs) // 2]


def ttfb(url: str, n: int) -> float:
    """Median seconds from sending a request to the first chunk of its streamed answer."""
    samples = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            start = time.perf_counter()
            with client.stream("GET", url) as r:
                next(r.iter_bytes())
                samples.append(time.perf_counter() - start)
    return median(samples)


def measure_corral(seconds: int, rounds: int, quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    serve.start(workers=1, http_options={"port": 0})
    try:
        base = serve.status().proxies[0].url if serve.status().proxies else ""
        for _ in range(200):
            if base:
                break
            time.sleep(0.05)
            base = serve.status().proxies[0].url if serve.status().proxies else ""
        for replicas in (1, 2):
            serve.run(HttpNoop.options(num_replicas=replicas, max_ongoing_requests=64).bind(), name="default")
            r = best_of(base + "/", seconds, rounds)
            out.update({f"corral_{replicas}r_{k}": v for k, v in r.items()})
        serve.run(HttpStream.bind(), name="stream", route_prefix="/stream")
        ttfb(base + "/stream", 5)
        out["ttfb_ms"] = 1000 * ttfb(base + "/stream", 30 if quick else 200)
    finally:
        serve.shutdown()
    return out


def measure_ray(seconds: int, rounds: int) -> dict[str, float] | None:
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": port})

        @ray_serve.deployment(max_ongoing_requests=64)
        class RayNoop:
            async def __call__(self, _request: Any) -> str:
                return "ok"

        ray_serve.run(RayNoop.bind(), name="default", route_prefix="/")
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        r = best_of(url, seconds, rounds)
        return {f"ray_{k}": v for k, v in r.items()}
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk); nothing measured")
        write_json(args.json, {"skipped": "wrk is not installed"})
        return 1
    seconds, rounds = (3, 1) if args.quick else (10, 3)
    with Child(["bench/_http_floor.py"]) as floor_server:
        floor = best_of(floor_server.address + "/", seconds, rounds)
    corral = measure_corral(seconds, rounds, args.quick)
    out: dict[str, float | int | str] = {
        "connections": CONNECTIONS,
        "floor_rps": round(floor["rps"]), "floor_p50_ms": floor["p50_ms"], "floor_p99_ms": floor["p99_ms"],
        "corral_rps": round(corral["corral_1r_rps"]), "corral_p50_ms": corral["corral_1r_p50_ms"],
        "corral_p99_ms": corral["corral_1r_p99_ms"],
        "corral_2r_rps": round(corral["corral_2r_rps"]), "corral_2r_p50_ms": corral["corral_2r_p50_ms"],
        "corral_2r_p99_ms": corral["corral_2r_p99_ms"],
        "corral_vs_floor": round(corral["corral_1r_rps"] / floor["rps"], 3),
        "corral_2r_vs_floor": round(corral["corral_2r_rps"] / floor["rps"], 3),
        "ttfb_ms": round(corral["ttfb_ms"], 3),
    }
    rows = [
        ["uvicorn + Starlette hello (floor)", out["floor_rps"], out["floor_p50_ms"], out["floor_p99_ms"], 1.0],
        ["corral HTTP, no-op, 1 replica", out["corral_rps"], out["corral_p50_ms"], out["corral_p99_ms"], out["corral_vs_floor"]],
        ["corral HTTP, no-op, 2 replicas", out["corral_2r_rps"], out["corral_2r_p50_ms"], out["corral_2r_p99_ms"], out["corral_2r_vs_floor"]],
    ]
    ray = measure_ray(seconds, rounds)
    if ray is None:
        out["ray"] = "skipped: ray[serve] is not installed"
    else:
        out.update({"ray_rps": round(ray["ray_rps"]), "ray_p50_ms": ray["ray_p50_ms"], "ray_p99_ms": ray["ray_p99_ms"],
                    "corral_vs_ray": round(corral["corral_1r_rps"] / ray["ray_rps"], 2)})
        rows.append(["Ray Serve HTTP, no-op, 1 replica", out["ray_rps"], out["ray_p50_ms"], out["ray_p99_ms"],
                     round(ray["ray_rps"] / floor["rps"], 3)])
    print_table(f"HTTP at {CONNECTIONS} connections (wrk, 1 thread; targets: corral_vs_floor >= 0.35, corral_vs_ray >= 10)",
                ["", "req/s", "p50 ms", "p99 ms", "vs floor"], rows)
    print(f"\nstreaming, time to first chunk (p50): {out['ttfb_ms']} ms")
    if ray is None:
        print("Ray Serve: skipped (ray[serve] is not installed)")
    else:
        print(f"corral over Ray Serve: {out['corral_vs_ray']}x the requests/s")
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
