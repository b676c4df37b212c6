"""Making the transport's ZeroMQ sockets, and answering ZAP requests.

Used by the I/O thread only (:mod:`transport._transport`): these functions
create and configure sockets; they never send a message of ours.
"""

from __future__ import annotations

import socket
from typing import Iterator

import zmq

from ._config import TransportConfig
from ._endpoint import ipc_path, new_ipc_endpoint, private_ipc_dir, sweep_stale_ipc
from ._errors import TransportError

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def bind_router(ctx: zmq.Context, cfg: TransportConfig) -> tuple[zmq.Socket, str, str | None]:
    """The receiving ROUTER, bound: ``(socket, address peers dial, ipc file or None)``.

    Raises:
        TransportError: a fixed TCP port is taken.
        ValueError, OSError: the ipc folder cannot be used.
    """
    router = ctx.socket(zmq.ROUTER)
    try:
        return _bind(router, cfg)
    except BaseException:
        router.close(linger=0)  # an open socket would keep the context from terminating
        raise


def _bind(router: zmq.Socket, cfg: TransportConfig) -> tuple[zmq.Socket, str, str | None]:
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, cfg.recv_hwm)
    router.setsockopt(zmq.ROUTER_HANDOVER, 1)
    router.setsockopt(zmq.MAXMSGSIZE, cfg.max_frame_bytes * 2 + 65536)
    if cfg.curve is not None:
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_SECRETKEY, cfg.curve.server_secret.encode())
        router.setsockopt(zmq.ZAP_DOMAIN, b"corral")
    if cfg.host is None:
        directory = private_ipc_dir(cfg.ipc_dir)
        sweep_stale_ipc(directory)  # sockets of processes killed before they could remove them
        address = new_ipc_endpoint(directory)
        router.bind(address)
        return router, address, ipc_path(address)
    if cfg.port == 0:
        port = router.bind_to_random_port(f"tcp://{cfg.host}")
    else:
        try:
            router.bind(f"tcp://{cfg.host}:{cfg.port}")
        except zmq.ZMQError as exc:
            raise TransportError(f"port {cfg.port} on {cfg.host} is not free: {exc}") from None
        port = cfg.port
    host = cfg.advertise_host or cfg.host
    if host in ("0.0.0.0", "*"):
        host = socket.gethostbyname(socket.gethostname())
    return router, f"tcp://{host}:{port}", None


def open_zap(ctx: zmq.Context) -> zmq.Socket:
    """The ZAP handler's socket: libzmq asks it whether a CURVE client may connect."""
    zap = ctx.socket(zmq.ROUTER)
    zap.setsockopt(zmq.LINGER, 0)
    zap.bind(ZAP_ENDPOINT)
    return zap


def answer_zap(zap: zmq.Socket, allowed_client: bytes) -> Iterator[str]:
    """Answer every waiting ZAP request: only the cluster's client key gets in.
    Yields the address of each connection refused."""
    while True:
        try:
            parts = zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        # [routing id, b"", version, request id, domain, address, identity, mechanism, credentials...]
        if len(parts) < 8:
            continue
        ident, _, version, request_id, _domain, address, _identity, mechanism = parts[:8]
        ok = mechanism == b"CURVE" and parts[8:9] == [allowed_client]
        code, text = (b"200", b"OK") if ok else (b"400", b"not a member of this cluster")
        zap.send_multipart([ident, b"", version, request_id, code, text, b"corral" if ok else b"", b""])
        if not ok:
            yield address.decode("utf-8", "replace")


def open_dealer(ctx: zmq.Context, cfg: TransportConfig, own_address: str) -> zmq.Socket:
    """A sending DEALER towards one peer, configured but not connected. Its
    routing id is our address, so the peer knows who sent a frame before decoding it."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, own_address.encode())
    sock.setsockopt(zmq.SNDHWM, cfg.send_hwm)
    sock.setsockopt(zmq.LINGER, 0)
    # ZMTP heartbeats drop a connection whose other end vanished without a FIN (a
    # host that died or was cut off) and dial again. The timeout is well inside the
    # liveness window: a peer restarted at the same address must get our answers
    # through a fresh connection before it would take our silence for death.
    interval_ms = max(1, int(cfg.heartbeat_interval_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2 * interval_ms)
    if cfg.curve is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, cfg.curve.server_public.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, cfg.curve.client_public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, cfg.curve.client_secret.encode())
    return sock


def ipc_refused(peer: str) -> bool:
    """Whether an ipc peer's socket file refuses connections (its process is gone).
    A frozen process still accepts (the kernel queues the connection)."""
    path = ipc_path(peer)
    if path is None:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False  # busy (backlog full) or not ours to judge: the heartbeats decide
    finally:
        probe.close()
    return False
