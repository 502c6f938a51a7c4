"""Frame-rate independent smoothing: the same attack and release in ms at 30, 60 or 144 fps."""

from __future__ import annotations

import math



def follow_coefficient(time_ms: float, dt_s: float) -> float:
    """The fraction of the remaining distance covered in ``dt_s`` by a one-pole follower.

    ``time_ms`` is the time constant (63 % of a step after ``time_ms``); 0 means "jump".
    Two steps of ``dt`` give exactly the same result as one step of ``2 * dt``.
    """
    if time_ms <= 0.0 or dt_s <= 0.0:
        return 1.0 if time_ms <= 0.0 else 0.0
    return 1.0 - math.exp(-dt_s * 1000.0 / time_ms)


def follow(current: float, target: float, attack_ms: float, release_ms: float, dt_s: float) -> float:
    """Move ``current`` toward ``target``: ``attack_ms`` when rising, ``release_ms`` when falling."""
    time_ms = attack_ms if target > current else release_ms
    return current + (target - current) * follow_coefficient(time_ms, dt_s)


def smoothstep(t: float) -> float:
    """Ease in and out over 0..1 (flat at both ends): ``3t^2 - 2t^3``."""
    return t * t * (3.0 - 2.0 * t)


def cyclic_delta(d: float) -> float:
    """A difference of positions on a cyclic 0..1 axis, the short way round (-0.5..0.5)."""
    return (d + 0.5) % 1.0 - 0.5


class Follower:
    """Stateful :func:`follow` with a remembered value (``None`` until the first input)."""

    __slots__ = ("attack_ms", "release_ms", "value")

    def __init__(self, attack_ms: float, release_ms: float, value: float | None = None) -> None:
        self.attack_ms = attack_ms
        self.release_ms = release_ms
        self.value = value

    def step(self, target: float, dt_s: float) -> float:
        if self.value is None:
            self.value = float(target)
        else:
            self.value = follow(self.value, float(target), self.attack_ms, self.release_ms, dt_s)
        return self.value
