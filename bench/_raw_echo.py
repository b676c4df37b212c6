"""The floor: a bare pyzmq ROUTER that echoes msgpack frames (run as a
script; ends when stdin closes), and the DEALER client that measures it.
With ``--buffers`` it echoes every frame of a message as received
(``copy=False`` both ways), the floor for large payloads."""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import msgpack
import zmq


def main() -> None:
    buffers = "--buffers" in sys.argv
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    address = f"ipc://{tempfile.gettempdir()}/corral-raw-{os.getpid()}.sock"
    router.bind(address)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(f"ADDRESS {address}", flush=True)
    while not stop.is_set():
        if not router.poll(200):
            continue
        while True:
            if buffers:
                try:
                    parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                router.send_multipart(parts, copy=False)
                continue
            try:
                ident, frame = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            router.send_multipart([ident, msgpack.packb(msgpack.unpackb(frame))])
    router.close(linger=0)
    ctx.term()
    os.unlink(address[len("ipc://"):])


class RawClient:
    """A DEALER in this process talking to the echo server at ``address``."""

    def __init__(self, address: str, payload: object) -> None:
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.connect(address)
        self._frame = payload

    def one(self) -> None:
        """One sequential round trip."""
        self._sock.send(msgpack.packb(self._frame))
        msgpack.unpackb(self._sock.recv())

    def pipelined(self, n: int, in_flight: int) -> None:
        """n round trips with up to ``in_flight`` outstanding."""
        sent = done = 0
        sock = self._sock
        while done < n:
            while sent - done < in_flight and sent < n:
                sock.send(msgpack.packb(self._frame))
                sent += 1
            msgpack.unpackb(sock.recv())
            done += 1

    def buffer_round_trip(self, header: bytes, buffer: object) -> int:
        """Send a header and one buffer without copying; wait for them to come back. Returns bytes received."""
        self._sock.send_multipart([header, buffer], copy=False)
        parts = self._sock.recv_multipart(copy=False)
        return sum(len(p.buffer) for p in parts)

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


if __name__ == "__main__":
    main()
