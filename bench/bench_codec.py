"""Codec bench: the hot message kinds of a handle request, encoded and decoded
by corral's protocol (msgpack with hand-written validation) against msgspec's
typed msgpack codec producing the same bytes (issue 15: "consider msgspec for
the hot path if it measurably beats hand-written validation").

Per message, in one process: a ``handle_request`` envelope (what a handle
sends) and a ``data`` answer (what a replica sends back), each encoded and
decoded. msgspec is measured only when importable (never a dependency); its
bytes are checked equal to corral's first, so both sides do the same work.

    python bench/bench_codec.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402,F401  (registers the serving layer's message kinds)
from actors._callbacks import answer_frame  # noqa: E402
from bench._common import median, parse_args, print_table, write_json  # noqa: E402
from protocol import decode_envelope  # noqa: E402
from protocol._envelope import encode_request  # noqa: E402
from protocol._serve import HandleRequest  # noqa: E402

SENDER = "ipc:///tmp/corral-client-12345.sock"
TARGET = "replica#deployment-0123abcd"
ARGS = [[1, "request", None]]
REQUEST = HandleRequest("__call__", ARGS, {}, "")
LIMIT = 1 << 28


def corral_cases() -> dict[str, Callable[[], Any]]:
    request = encode_request("handle_request", REQUEST, 12345, SENDER, TARGET, 1.7e9)
    answer = answer_frame(SENDER, 12345, TARGET, ARGS[0], None, "")
    return {
        "request_encode": lambda: encode_request("handle_request", REQUEST, 12345, SENDER, TARGET, 1.7e9),
        "request_decode": lambda: decode_envelope(request, LIMIT),
        "answer_encode": lambda: answer_frame(SENDER, 12345, TARGET, ARGS[0], None, ""),
        "answer_decode": lambda: decode_envelope(answer, LIMIT),
    }


def msgspec_cases() -> dict[str, Callable[[], Any]] | None:
    try:
        import msgspec
    except ImportError:
        return None

    class Request(msgspec.Struct, array_like=True, frozen=True):
        method: str
        args: Any
        kwargs: Any
        multiplexed_model_id: str = ""

    class Data(msgspec.Struct, array_like=True, frozen=True):
        value: Any

    header = tuple[int, str, int, Optional[int], str, str, Optional[float], int, msgspec.Raw]
    headers = msgspec.msgpack.Decoder(header)
    requests, answers = msgspec.msgpack.Decoder(Request), msgspec.msgpack.Decoder(Data)
    encoder = msgspec.msgpack.Encoder()
    request = Request("__call__", ARGS, {}, "")

    def encode_req() -> bytes:
        return encoder.encode((1, "handle_request", 12345, None, SENDER, TARGET, 1.7e9, 1, request))

    def encode_answer() -> bytes:
        return encoder.encode((1, "data", 0, 12345, SENDER, "", None, 0, Data(ARGS[0])))

    req_frame, answer_bytes = encode_req(), encode_answer()
    ours = corral_cases()
    if req_frame != ours["request_encode"]() or answer_bytes != ours["answer_encode"]():
        raise AssertionError("msgspec's frames differ from corral's: the comparison would not be like for like")

    def decode(frame: bytes, body: Any) -> Any:
        head = headers.decode(frame)
        return head, body.decode(head[8])

    return {
        "request_encode": encode_req,
        "request_decode": lambda: decode(req_frame, requests),
        "answer_encode": encode_answer,
        "answer_decode": lambda: decode(answer_bytes, answers),
    }


def ns_per_call(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e9


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    rounds, n = (5, 20_000) if args.quick else (9, 200_000)
    ours, theirs = corral_cases(), msgspec_cases()
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved: this machine is shared and noisy
        for name in ours:
            samples.setdefault(f"corral_{name}_ns", []).append(ns_per_call(ours[name], n))
            if theirs is not None:
                samples.setdefault(f"msgspec_{name}_ns", []).append(ns_per_call(theirs[name], n))
    out: dict[str, Any] = {"rounds": rounds, "msgspec": theirs is not None}
    out.update({k: round(median(v)) for k, v in samples.items()})
    rows = []
    for name in ours:
        mine = out[f"corral_{name}_ns"]
        other = out.get(f"msgspec_{name}_ns")
        if other:
            out[f"{name}_corral_over_msgspec"] = round(mine / other, 2)
        rows.append([name, mine, other or "not installed", out.get(f"{name}_corral_over_msgspec", "")])
    per_side = sum(out[f"corral_{k}_ns"] for k in ("request_encode", "answer_decode"))
    out["client_codec_ns_per_request"] = per_side
    if theirs is not None:
        out["client_codec_saving_ns_per_request"] = per_side - sum(out[f"msgspec_{k}_ns"] for k in ("request_encode", "answer_decode"))
    print_table(
        f"codec of the hot message kinds, ns per message (median of {rounds} interleaved rounds of {n})",
        ["", "corral", "msgspec", "corral / msgspec"],
        rows,
    )
    print(f"a client encodes a request and decodes an answer: {per_side} ns of codec per request"
          + (f", {out['client_codec_saving_ns_per_request']} ns less with msgspec" if theirs is not None else ""))
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
