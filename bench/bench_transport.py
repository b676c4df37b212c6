"""Foundation bench: a corral actor ask between two processes against raw pyzmq.

(a) raw pyzmq DEALER->ROUTER msgpack echo between two processes: the floor;
(b) corral ``ask`` to an actor in another process with ``inline_asks`` (answered
on the receiving thread when idle: the figures the targets are about);
(c) the same to an actor on its own thread (pykka's default, one thread hop more).
Each sequential (p50, p99) and pipelined (64 in flight, messages/s). The two
are interleaved in rounds and the medians of the rounds are compared, because
this machine is shared and noisy.

    python bench/bench_transport.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import ActorSystem  # noqa: E402
from bench._common import Child, median, parse_args, percentile, print_table, sequential, write_json  # noqa: E402
from bench._raw_echo import RawClient  # noqa: E402

IN_FLIGHT = 64
PAYLOAD = [1, "request", None]


def corral_client(system: ActorSystem, address: str, name: str) -> tuple[Callable[[], None], Callable[[int], None]]:
    ref = system.ref(address, name)

    def one() -> None:
        ref.ask(PAYLOAD).get()

    def pipelined(n: int) -> None:
        window: deque = deque()
        for _ in range(n):
            window.append(ref.ask(PAYLOAD))
            if len(window) >= IN_FLIGHT:
                window.popleft().get()
        while window:
            window.popleft().get()

    return one, pipelined


def rate(pipelined: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    pipelined(n)
    return n / (time.perf_counter() - start)


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    rounds, seq_n, pipe_n = (5, 3000, 15_000) if args.quick else (9, 20_000, 100_000)
    keys = ("raw_p50", "raw_p99", "ask_p50", "ask_p99", "raw_rate", "ask_rate", "thread_p50", "thread_p99", "thread_rate")
    figures: dict[str, list[float]] = {k: [] for k in keys}
    actors = ["--actor", "echo=bench._actors:Echo", "--actor", "echo_thread=bench._actors:EchoOnThread"]
    with Child(["bench/_raw_echo.py"]) as raw_srv, Child(["-m", "actors.host", *actors]) as host:
        raw = RawClient(raw_srv.address, PAYLOAD)
        raw_one, raw_pipe = raw.one, lambda n: raw.pipelined(n, IN_FLIGHT)
        system = ActorSystem()
        try:
            clients = {"ask": corral_client(system, host.address, "echo"), "thread": corral_client(system, host.address, "echo_thread")}
            for warm in (raw_one, *(one for one, _ in clients.values())):
                sequential(warm, 300)
            for _ in range(rounds):
                raw_seq = sequential(raw_one, seq_n)
                figures["raw_p50"].append(percentile(raw_seq, 50) * 1e6)
                figures["raw_p99"].append(percentile(raw_seq, 99) * 1e6)
                figures["raw_rate"].append(rate(raw_pipe, pipe_n))
                for key, (one, pipe) in clients.items():
                    seq = sequential(one, seq_n)
                    figures[f"{key}_p50"].append(percentile(seq, 50) * 1e6)
                    figures[f"{key}_p99"].append(percentile(seq, 99) * 1e6)
                    figures[f"{key}_rate"].append(rate(pipe, pipe_n))
        finally:
            system.shutdown()
            raw.close()
    m = {k: median(v) for k, v in figures.items()}
    out = {
        "rounds": rounds,
        "raw_p50_us": round(m["raw_p50"], 1),
        "raw_p99_us": round(m["raw_p99"], 1),
        "ask_p50_us": round(m["ask_p50"], 1),
        "ask_p99_us": round(m["ask_p99"], 1),
        "ask_p50_ratio": round(m["ask_p50"] / m["raw_p50"], 2),
        "ask_p99_ratio": round(m["ask_p99"] / m["raw_p99"], 2),
        "raw_msgs_per_s": round(m["raw_rate"]),
        "ask_msgs_per_s": round(m["ask_rate"]),
        "throughput_ratio": round(m["ask_rate"] / m["raw_rate"], 3),
        "thread_ask_p50_us": round(m["thread_p50"], 1),
        "thread_ask_p99_us": round(m["thread_p99"], 1),
        "thread_ask_msgs_per_s": round(m["thread_rate"]),
        "thread_ask_p50_ratio": round(m["thread_p50"] / m["raw_p50"], 2),
        "thread_throughput_ratio": round(m["thread_rate"] / m["raw_rate"], 3),
    }
    print_table(
        f"ask round trip between two processes (median of {rounds} interleaved rounds; {IN_FLIGHT} in flight for msgs/s)",
        ["", "p50 us", "p99 us", "msgs/s"],
        [
            ["raw pyzmq DEALER->ROUTER", out["raw_p50_us"], out["raw_p99_us"], out["raw_msgs_per_s"]],
            ["corral ask, inline_asks actor", out["ask_p50_us"], out["ask_p99_us"], out["ask_msgs_per_s"]],
            ["corral / raw", out["ask_p50_ratio"], out["ask_p99_ratio"], out["throughput_ratio"]],
            ["corral ask, actor on its own thread", out["thread_ask_p50_us"], out["thread_ask_p99_us"], out["thread_ask_msgs_per_s"]],
            ["own thread / raw", out["thread_ask_p50_ratio"], "", out["thread_throughput_ratio"]],
        ],
    )
    print("targets (issue 15): ask p50 <= 1.8x raw; throughput >= 0.35x raw (the inline_asks rows)")
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
