"""Effect parameters as the show sees them, and the one place they become the renderer's ``Effects``.

Two vocabularies meet here:

- presets drive :class:`~vjengine.render.effects.Effects` fields by name in their natural units
  (``flash = 0..1``, ``zoom >= 1``, ``hue_deg``, ``feedback = 0..0.99``, ``strobe_hz``, ...);
- OSC/cues set ``"effect.param"`` controls normalised 0..1 (``/vj/fx/zoom/amount 0.5``), scaled
  here by :data:`FX_CONTROLS`. A cue or command may also name an ``Effects`` field directly
  (raw units).

Overrides win over the preset's mapping; ``intensity`` multiplies; ``blackout`` wins over all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from vjengine.mapping.preset import fx_params
from vjengine.render.effects import Effects

# "effect.param" -> (Effects field, value at 0, value at 1, integer?)
FX_CONTROLS: dict[str, tuple[str, float, float, bool]] = {
    "flash.amount": ("flash", 0.0, 1.0, False),
    "zoom.amount": ("zoom", 1.0, 2.0, False),
    "hue.rotate": ("hue_deg", 0.0, 360.0, False),
    "mirror.mode": ("mirror", 0.0, 3.0, True),
    "kaleidoscope.segments": ("kaleidoscope", 0.0, 32.0, True),
    "kaleidoscope.rotate": ("kaleidoscope_deg", 0.0, 360.0, False),
    "feedback.amount": ("feedback", 0.0, 0.99, False),
    "feedback.zoom": ("feedback_zoom", 1.0, 1.1, False),
    "strobe.rate": ("strobe_hz", 0.0, 30.0, False),
    "intensity.amount": ("intensity", 0.0, 1.0, False),
}

# Effects fields a preset may drive (the photosensitivity cap and blackout are show settings).
PRESET_FX_FIELDS: tuple[str, ...] = fx_params()
_INT_FIELDS = {f.name for f in dataclasses.fields(Effects) if f.type in ("int", int)}


def osc_fx_names() -> list[str]:
    """The ``effect/param`` names for the OSC address space (``/vj/fx/<effect>/<param>``)."""
    return [k.replace(".", "/") for k in FX_CONTROLS]


def resolve_override(target: str, value: float) -> tuple[str, float] | None:
    """An override ``(Effects field, value in its units)`` from an ``effect.param`` or a field name."""
    key = target.replace("/", ".")
    spec = FX_CONTROLS.get(key)
    if spec is not None:
        name, lo, hi, integer = spec
        v = lo + (hi - lo) * min(max(value, 0.0), 1.0)
        return name, float(round(v)) if integer else v
    if key in PRESET_FX_FIELDS:
        return key, value
    return None


def make_effects(
    mapped: Mapping[str, float],
    overrides: Mapping[str, float] | None = None,
    *,
    intensity: float = 1.0,
    blackout: bool = False,
    strobe_max_hz: float = 3.0,
) -> Effects:
    """The renderer's ``Effects`` for one frame (sanitized: never out of range)."""
    values: dict[str, float] = {}
    for name, v in mapped.items():
        if name in PRESET_FX_FIELDS and math.isfinite(v):
            values[name] = v
    for target, v in (overrides or {}).items():
        resolved = resolve_override(target, v)
        if resolved is not None:
            values[resolved[0]] = resolved[1]
    kwargs: dict[str, object] = {}
    for name, v in values.items():
        kwargs[name] = int(round(v)) if name in _INT_FIELDS else float(v)
    fx = Effects(**kwargs)  # type: ignore[arg-type]
    fx.intensity = fx.intensity * min(max(intensity, 0.0), 1.0)
    fx.blackout = bool(blackout)
    fx.strobe_max_hz = strobe_max_hz
    return fx.sanitized()
