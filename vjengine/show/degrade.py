"""Degrade before dropping: the frame-rate governor of the live show.

When the machine is busy (the DJ software beside us, a background update) frames start running late.
Rather than drop frames, :class:`Governor` steps down a ladder of cheaper renderings, one level at a
time, and climbs back when there is room again::

    level  render scale  costly effects  blend taps
    0      1.0           on              all (2**D)
    1      0.75          on              all
    2      0.5           on              all
    3      0.5           off (trails)    all
    4      0.5           off             4 nearest cells
    5      0.5           off             the nearest cell

It is pure: ``update(now_s, interval_s, busy_s)`` once per frame with the frame-to-frame interval and
the time the frame kept the render thread busy (everything but waiting for vsync or pacing), and it
returns the :class:`Level` to draw with. Time comes in as an argument (an injected clock), so tests
drive it frame by frame.

Rules (``budget_s`` = one frame at the target rate):

- a frame is *late* when its interval exceeds ``late_factor`` x budget or its busy time exceeds
  ``busy_high`` x budget;
- step down one level when at least ``late_share`` of the frames of the last ``window_s`` were late,
  and at least ``down_hold_s`` passed since the last change (the new level gets time to show);
  when at least ``severe_share`` of them came more than ``severe_factor`` x budget apart (a sudden
  load: the show below a third of its rate), ``severe_hold_s`` is enough, so the ladder is down in
  about a second rather than five;
- step up one level when no frame was late and busy time stayed under ``busy_low`` x budget for the
  last ``up_after_s`` seconds (several seconds), and as long since the last change;
- a step up that is followed by a step down within ``up_after_s`` doubles the wait before the next
  step up (up to ``max_up_after_s``): the ladder never oscillates faster than every few seconds.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """What to draw with at one rung of the ladder."""

    index: int
    render_scale: float
    costly_effects: bool
    max_taps: int | None  # None: every neighbour

    def describe(self) -> str:
        if self.index == 0:
            return "full quality"
        parts = [f"scale {self.render_scale:g}"]
        if not self.costly_effects:
            parts.append("no trails")
        if self.max_taps is not None:
            parts.append(f"{self.max_taps} nearest cell{'s' if self.max_taps > 1 else ''}")
        return ", ".join(parts)


LEVELS: tuple[Level, ...] = (
    Level(0, 1.0, True, None),
    Level(1, 0.75, True, None),
    Level(2, 0.5, True, None),
    Level(3, 0.5, False, None),
    Level(4, 0.5, False, 4),
    Level(5, 0.5, False, 1),
)


class Governor:
    """See the module docstring. ``fps``: the target frame rate (the display's, or ``--fps``)."""

    def __init__(self, fps: float = 60.0, *, late_factor: float = 1.5, busy_high: float = 0.9,
                 busy_low: float = 0.5, late_share: float = 0.2, window_s: float = 0.5,
                 down_hold_s: float = 1.0, up_after_s: float = 4.0, max_up_after_s: float = 60.0,
                 severe_factor: float = 3.0, severe_share: float = 0.5, severe_hold_s: float = 0.25,
                 levels: tuple[Level, ...] = LEVELS, enabled: bool = True) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.budget_s = 1.0 / fps
        self.late_factor = late_factor
        self.busy_high = busy_high
        self.busy_low = busy_low
        self.late_share = late_share
        self.window_s = window_s
        self.down_hold_s = down_hold_s
        self.severe_factor = severe_factor
        self.severe_share = severe_share
        self.severe_hold_s = min(severe_hold_s, down_hold_s)
        self.base_up_after_s = up_after_s
        self.up_after_s = up_after_s
        self.max_up_after_s = max_up_after_s
        self.levels = levels
        self.enabled = enabled
        self.index = 0
        self.changes = 0  # level changes so far
        self.downs = 0
        self.ups = 0
        self._recent: collections.deque[tuple[float, bool, bool]] = collections.deque()  # (time, late, severe)
        self._late_in_window = 0
        self._severe_in_window = 0
        self._last_change_s: float | None = None
        self._last_up_s: float | None = None
        self._last_pressure_s: float | None = None  # the last late or busy frame

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def update(self, now_s: float, interval_s: float, busy_s: float) -> Level:
        """Account one frame; returns the level the next frame should use."""
        if not self.enabled:
            return self.level
        budget = self.budget_s
        late = interval_s > self.late_factor * budget or busy_s > self.busy_high * budget
        severe = interval_s > self.severe_factor * budget
        room = not late and busy_s <= self.busy_low * budget
        self._recent.append((now_s, late, severe))
        self._late_in_window += late
        self._severe_in_window += severe
        # the last window_s seconds, but never fewer than 3 frames: very slow frames must still count
        while len(self._recent) > 3 and self._recent[0][0] < now_s - self.window_s:
            _, was_late, was_severe = self._recent.popleft()
            self._late_in_window -= was_late
            self._severe_in_window -= was_severe
        if not room:
            self._last_pressure_s = now_s
        since_change = float("inf") if self._last_change_s is None else now_s - self._last_change_s
        frames = len(self._recent)
        hold = self.severe_hold_s if self._severe_in_window >= max(3, self.severe_share * frames) else self.down_hold_s
        if (self._late_in_window >= max(2, self.late_share * frames) and since_change >= hold
                and self.index < len(self.levels) - 1):
            if self._last_up_s is not None and now_s - self._last_up_s < self.up_after_s:
                self.up_after_s = min(self.up_after_s * 2.0, self.max_up_after_s)  # it went up too soon
            self._change(self.index + 1, now_s)
            self.downs += 1
        elif self.index > 0 and since_change >= self.up_after_s:
            calm_since = max(self._last_pressure_s or 0.0, self._last_change_s or 0.0)
            if now_s - calm_since >= self.up_after_s:
                self._change(self.index - 1, now_s)
                self.ups += 1
                self._last_up_s = now_s
        if self.index == 0 and self._last_up_s is not None and now_s - self._last_up_s > self.max_up_after_s:
            self.up_after_s = self.base_up_after_s  # a long calm spell forgives the old oscillation
        return self.level

    def _change(self, index: int, now_s: float) -> None:
        self.index = index
        self.changes += 1
        self._last_change_s = now_s
        self._recent.clear()
        self._late_in_window = 0
        self._severe_in_window = 0

    def status(self) -> dict[str, object]:
        """For /vj/status and the HUD."""
        lv = self.level
        return {"level": lv.index, "render_scale": lv.render_scale, "costly_effects": lv.costly_effects,
                "max_taps": lv.max_taps or 0, "changes": self.changes, "state": lv.describe()}

    def hud_line(self) -> str:
        lv = self.level
        return "quality: full" if lv.index == 0 else f"quality: degraded {lv.index}/{len(self.levels) - 1} ({lv.describe()})"
