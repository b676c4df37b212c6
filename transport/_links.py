"""Watching each sending socket's connection, to know at once when a peer's
process is gone.

The monitors sit in the driver's poller, which polls them without the socket
lock. So a thread other than the driver that opens or closes a DEALER under
the lock (a thread leading the read, or sending directly) never touches the
poller: the driver registers new monitors and closes retired ones at the
start of its next round (:meth:`LinkWatch.settle`). Closing a monitor the
driver is polling would crash its poll.

Every DEALER gets a ZeroMQ monitor. A connection that closes while nothing
listens at the peer's address any more (a reconnect is refused, or for ipc,
nothing accepts on the socket file) means the process is gone: no liveness
window to wait for. A peer that is frozen or cut off still accepts or times
out; it is left to the heartbeats.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from ._sockets import ipc_refused

#: The reason given for a peer whose address refuses connections: its process is
#: certainly gone (a frozen or cut-off one would not refuse).
NOTHING_LISTENS = "nothing listens at its address"

# its connection came up, went away, or a (re)connect attempt failed
_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


class LinkWatch:
    """The monitors of the sending sockets, registered with the driver's poller.

    Args:
        on_driver: whether the calling thread is the driver (the one that polls).
    """

    def __init__(self, on_driver: Callable[[], bool] = lambda: True) -> None:
        self.poller: Any = None  # a zmq.Poller, or a LoopDriver (same register/unregister)
        self._on_driver = on_driver
        self._monitors: dict[zmq.Socket, str] = {}
        self._up: dict[str, bool] = {}
        self._ids = itertools.count(1)
        self._fresh: list[zmq.Socket] = []  # opened off the driver: registered at its next round
        self._retired: list[zmq.Socket] = []  # given up off the driver: closed at its next round

    def attach(self, poller: Any) -> None:
        """Register every monitor with ``poller`` (a new driver's), or with nothing (None);
        the monitors given up meanwhile close (the last driver polls no more)."""
        retired, self._retired = self._retired, []
        for monitor in retired:
            monitor.close(linger=0)
        self.poller = poller
        self._fresh.clear()
        if poller is not None:
            for monitor in self._monitors:
                poller.register(monitor, zmq.POLLIN)

    def settle(self) -> None:
        """By the driver, under the socket lock: register the monitors opened by other
        threads since its last round, close those they gave up."""
        if not self._fresh and not self._retired:
            return
        fresh, self._fresh = self._fresh, []
        retired, self._retired = self._retired, []
        for monitor in fresh:  # (one removed meanwhile left this list then)
            if self.poller is not None:
                self.poller.register(monitor, zmq.POLLIN)
        for monitor in retired:
            self._close(monitor)

    def _close(self, monitor: zmq.Socket) -> None:
        if self.poller is not None:
            with contextlib.suppress(KeyError):  # never registered with this poller
                self.poller.unregister(monitor)
        monitor.close(linger=0)

    def add(self, sock: zmq.Socket, peer: str) -> None:
        """Monitor a DEALER (before it connects)."""
        # a name of its own: pyzmq's default names it by file descriptor, which a new socket may reuse
        monitor = sock.get_monitor_socket(_LINK_EVENTS, addr=f"inproc://corral-link-{next(self._ids)}")
        self._monitors[monitor] = peer
        self._up[peer] = False
        if not self._on_driver():
            self._fresh.append(monitor)
        elif self.poller is not None:
            self.poller.register(monitor, zmq.POLLIN)

    def remove(self, sock: zmq.Socket, peer: str) -> None:
        """Stop monitoring a DEALER that is about to close."""
        # libzmq sends monitor events blocking: the monitored socket must stop
        # reporting before its reader is closed, or libzmq's own threads hang
        sock.disable_monitor()
        self._up.pop(peer, None)
        on_driver = self._on_driver()
        for monitor, owner in list(self._monitors.items()):
            if owner == peer:
                del self._monitors[monitor]
                if monitor in self._fresh:  # never registered
                    self._fresh.remove(monitor)
                    monitor.close(linger=0)
                elif on_driver:
                    self._close(monitor)
                else:
                    self._retired.append(monitor)

    def gone(self, monitor: zmq.Socket) -> tuple[str, str] | None:
        """Read a monitor's events; ``(peer, reason)`` once they show its process is gone."""
        peer = self._monitors.get(monitor)
        while peer is not None:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return None
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up[peer] = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._up[peer] = False
                if ipc_refused(peer):
                    return peer, f"its connection closed and {NOTHING_LISTENS}"
            elif event == zmq.EVENT_CLOSED and not self._up.get(peer, False):
                return peer, f"{NOTHING_LISTENS} (connection refused)"
        return None
