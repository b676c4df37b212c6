"""corral's ZeroMQ transport: one driver per process (its I/O thread, or an asyncio
loop it was handed to) owns every socket.

Knows frames and envelopes, peers and heartbeats; nothing about actors.
Imports only ``protocol``. ``_transport.py`` is the shell the drivers run;
its receiving half is ``_receiving.py``; what can be said without sockets
lives beside it in small modules (batches in ``_batches.py``, inline work in
``_standby.py``, liveness in ``_liveness.py``).
"""

from ._config import TransportConfig
from ._curve import CurveKeys, generate_keys, load_keys
from ._endpoint import check_endpoint, ipc_path, private_ipc_dir
from ._errors import PEER_LEFT, PeerUnavailable, SendQueueFull, TransportClosed, TransportError
from ._liveness import LivenessTracker, LogLimiter
from ._links import NOTHING_LISTENS
from ._standby import about_to_block, more_to_come
from ._transport import Transport, TransportStatistics
from ._waker import SpinningSelector

__all__ = [
    "about_to_block",
    "more_to_come",
    "NOTHING_LISTENS",
    "PEER_LEFT",
    "CurveKeys",
    "generate_keys",
    "load_keys",
    "LivenessTracker",
    "LogLimiter",
    "PeerUnavailable",
    "SendQueueFull",
    "SpinningSelector",
    "Transport",
    "TransportClosed",
    "TransportConfig",
    "TransportError",
    "TransportStatistics",
    "check_endpoint",
    "ipc_path",
    "private_ipc_dir",
]
