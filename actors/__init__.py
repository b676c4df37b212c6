"""corral's actor runtime: pykka actors in each process, reachable from
other processes by address and name.

    from actors import Actor, ActorSystem

    class Counter(Actor):
        def __init__(self):
            super().__init__()
            self.count = 0

        def receive(self, message):
            self.count += message
            return self.count

    with ActorSystem() as system:
        ref = system.spawn(Counter, name="counter")
        ref.ask(2).get(timeout=1)   # -> 2
"""

from ._actor import Actor
from ._config import Config, HttpOptions, ServeSettings
from ._errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    ActorSystemShutDown,
    AskCancelled,
    AskTimeout,
    MessageNotHandled,
    RemoteError,
    RemoteProtocolError,
)
from ._future import Future
from ._ref import ActorRef
from ._stream import Stream
from ._system import ActorSystem, SystemStatistics

__all__ = [
    "Actor",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "ActorSystemShutDown",
    "AskCancelled",
    "AskTimeout",
    "Config",
    "Future",
    "MessageNotHandled",
    "RemoteError",
    "RemoteProtocolError",
    "HttpOptions",
    "ServeSettings",
    "Stream",
    "SystemStatistics",
]
