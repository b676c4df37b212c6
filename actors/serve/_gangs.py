"""Gang scheduling options, as a deployment declares them (validated, pure).

The reservations that place gangs live with the head (``head/_gang_placement.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
POLICIES = ("RESTART_GANG",)


class GangConfigError(ValueError):
    """A gang scheduling option is wrong; the message names it."""


@dataclass(frozen=True)
class GangSchedulingConfig:
    """How a deployment's replicas form gangs that live and die as one.

    Attributes:
        gang_size: members per gang; ``num_replicas`` must be a multiple of it.
        gang_placement_strategy: PACK (fewest nodes, best effort), SPREAD
            (distinct nodes, best effort), STRICT_PACK (one node) or
            STRICT_SPREAD (distinct nodes required).
        runtime_failure_policy: what a member's failure does to its gang:
            RESTART_GANG (tear the whole gang down and start it again).
    """

    gang_size: int = 1
    gang_placement_strategy: str = "PACK"
    runtime_failure_policy: str = "RESTART_GANG"

    def __post_init__(self) -> None:
        if isinstance(self.gang_size, bool) or not isinstance(self.gang_size, int) or self.gang_size < 1:
            raise GangConfigError(f"gang_scheduling_config.gang_size: expected an int >= 1, got {self.gang_size!r}")
        if self.gang_placement_strategy not in STRATEGIES:
            raise GangConfigError(
                f"gang_scheduling_config.gang_placement_strategy: expected one of {', '.join(STRATEGIES)}, "
                f"got {self.gang_placement_strategy!r}"
            )
        if self.runtime_failure_policy not in POLICIES:
            raise GangConfigError(
                f"gang_scheduling_config.runtime_failure_policy: {self.runtime_failure_policy!r} is not "
                f"implemented; the only policy is RESTART_GANG"
            )

    @classmethod
    def from_value(cls, value: Any) -> GangSchedulingConfig | None:
        """Build from a dict (unknown fields refused), an instance, or None."""
        if value is None or isinstance(value, GangSchedulingConfig):
            return value
        if not isinstance(value, dict):
            raise GangConfigError(f"gang_scheduling_config: expected a GangSchedulingConfig or a dict, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise GangConfigError(f"gang_scheduling_config: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
