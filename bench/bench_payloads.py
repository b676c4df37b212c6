"""Payload bench: numpy arrays through a handle against raw pyzmq moving the
same buffers between two processes with ``copy=False`` (the floor), in one run.

Round trips of 1 KiB, 1 MiB and 64 MiB float64 arrays: corral sends each as
its own ZeroMQ frame, not copied on the way out, and the replica gets a view
of the frame it arrived in. Also the request path of a 1 KiB array against a
1 KiB bytes argument (which travels inside the envelope), and Ray Serve when
``ray[serve]`` is importable (skipped otherwise; never a dependency).

    python bench/bench_payloads.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from actors import serve  # noqa: E402
from bench._apps import Echo  # noqa: E402
from bench._common import Child, median, parse_args, percentile, print_table, sequential, write_json  # noqa: E402
from bench._raw_echo import RawClient  # noqa: E402

SIZES = {"1kib": 1 << 10, "1mib": 1 << 20, "64mib": 64 << 20}


def counts(quick: bool) -> dict[str, int]:
    return {"1kib": 500 if quick else 3000, "1mib": 60 if quick else 300, "64mib": 6 if quick else 20}


def measure(quick: bool) -> dict[str, float]:
    arrays = {name: np.random.default_rng(0).random(size // 8) for name, size in SIZES.items()}
    n = counts(quick)
    rounds = 3 if quick else 5
    got: dict[str, list[float]] = {}
    with Child(["bench/_raw_echo.py", "--buffers"]) as server:
        raw = RawClient(server.address, None)
        serve.start(workers=1)
        try:
            handle = serve.run(Echo.bind(), name="payloads", route_prefix=None)
            small_bytes = bytes(1024)
            for name, array in arrays.items():
                for _ in range(3):
                    handle.remote(array).result(timeout_s=60)
                    raw.buffer_round_trip(b"h", array)
            handle.remote(small_bytes).result(timeout_s=60)
            for _ in range(rounds):
                for name, array in arrays.items():
                    got.setdefault(f"raw_{name}", []).append(median(sequential(lambda: raw.buffer_round_trip(b"h", array), n[name])))
                    got.setdefault(f"corral_{name}", []).append(median(sequential(lambda: handle.remote(array).result(timeout_s=60), n[name])))
                bytes_seq = sequential(lambda: handle.remote(small_bytes).result(timeout_s=60), n["1kib"])
                got.setdefault("corral_bytes_1kib", []).append(median(bytes_seq))
                got.setdefault("corral_bytes_1kib_p99", []).append(percentile(bytes_seq, 99))
            check = handle.remote(arrays["1mib"]).result(timeout_s=60)
            assert np.array_equal(check, arrays["1mib"]), "the array came back changed"
        finally:
            serve.shutdown()
            raw.close()
    return {k: median(v) for k, v in got.items()}


def measure_ray(quick: bool) -> dict[str, float] | None:
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError:
        return None
    n = counts(quick)
    arrays = {name: np.random.default_rng(0).random(size // 8) for name, size in SIZES.items()}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray_serve.deployment
        class RayEcho:
            def __call__(self, x: Any = None) -> Any:
                return x

        handle = ray_serve.run(RayEcho.bind(), name="payloads", route_prefix=None)
        out = {}
        for name, array in arrays.items():
            for _ in range(2):
                handle.remote(array).result()
            out[f"ray_{name}"] = median(sequential(lambda: handle.remote(array).result(), max(3, n[name] // 3)))
        return out
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    m = measure(args.quick)
    out: dict[str, float | int | str] = {}
    rows = []
    for name, size in SIZES.items():
        raw_s, corral_s = m[f"raw_{name}"], m[f"corral_{name}"]
        out[f"raw_{name}_us"] = round(raw_s * 1e6, 1)
        out[f"corral_{name}_us"] = round(corral_s * 1e6, 1)
        out[f"corral_{name}_mib_per_s"] = round(2 * size / corral_s / 2**20, 1)
        out[f"payload_{name}_vs_raw"] = round(raw_s / corral_s, 3)
        rows.append([f"{name} float64 array", out[f"raw_{name}_us"], out[f"corral_{name}_us"],
                     out[f"corral_{name}_mib_per_s"], out[f"payload_{name}_vs_raw"]])
    out["corral_bytes_1kib_us"] = round(m["corral_bytes_1kib"] * 1e6, 1)
    out["array_1kib_vs_bytes_1kib"] = round(m["corral_1kib"] / m["corral_bytes_1kib"], 2)
    rows.append(["1 KiB bytes argument", "", out["corral_bytes_1kib_us"], "", ""])
    print_table(
        "round trip through a handle, p50 (bandwidth ratio = raw time / corral time; target for 64 MiB >= 0.5)",
        ["", "raw pyzmq us", "corral us", "corral MiB/s", "corral / raw"],
        rows,
    )
    print(f"\n1 KiB array over 1 KiB bytes: {out['array_1kib_vs_bytes_1kib']}x (target <= 1.5)")
    ray = measure_ray(args.quick)
    if ray is None:
        out["ray"] = "skipped: ray[serve] is not installed"
        print("Ray Serve: skipped (ray[serve] is not installed)")
    else:
        ray_rows = []
        for name in SIZES:
            out[f"ray_{name}_us"] = round(ray[f"ray_{name}"] * 1e6, 1)
            out[f"corral_vs_ray_{name}"] = round(ray[f"ray_{name}"] / m[f"corral_{name}"], 1)
            ray_rows.append([name, out[f"ray_{name}_us"], out[f"corral_{name}_us"], out[f"corral_vs_ray_{name}"]])
        print_table("Ray Serve side by side, p50", ["array", "Ray Serve us", "corral us", "corral speed-up"], ray_rows)
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
