"""The floor: a bare pyzmq ROUTER that echoes msgpack frames. Ends when stdin closes."""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import msgpack
import zmq


def main() -> None:
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
            try:
                ident, frame = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            router.send_multipart([ident, msgpack.packb(msgpack.unpackb(frame))])
    router.close(linger=0)
    ctx.term()
    os.unlink(address[len("ipc://"):])


if __name__ == "__main__":
    main()
