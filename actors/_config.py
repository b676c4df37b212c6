"""The one typed settings object of a corral process."""

from __future__ import annotations

from dataclasses import dataclass, field

from transport import TransportConfig


@dataclass(frozen=True)
class Config:
    """Settings of an :class:`~actors.ActorSystem` and everything above it.

    Attributes:
        transport: how the process binds, heartbeats and bounds its queues.
        ask_timeout_s: the deadline of an ``ask`` that names none.
        stop_timeout_s: how long shutdown waits for each actor to stop.
    """

    transport: TransportConfig = field(default_factory=TransportConfig)
    ask_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.transport, TransportConfig):
            raise ValueError(f"Config.transport: expected a TransportConfig, got {self.transport!r}")
        for name in ("ask_timeout_s", "stop_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Config.{name}: expected a number > 0, got {value!r}")
