"""The effects vocabulary: the ``Effects`` values one frame is drawn with, and their names.

A ground-floor module (it imports nothing from vjengine): mapping (which effect parameters a preset
may drive), show (overrides from OSC and cues), control (the OSC names) and render (the shaders'
inputs) all read it here.

Two vocabularies meet:

- presets drive ``Effects`` fields by name in their natural units (``flash = 0..1``, ``zoom >= 1``,
  ``hue_deg``, ``feedback = 0..0.99``, ``strobe_hz``, ...): :data:`PRESET_FX_FIELDS`;
- OSC and cues set ``"effect.param"`` controls normalised 0..1 (``/vj/fx/zoom/amount 0.5``), scaled
  by :data:`FX_CONTROLS`. A cue or command may also name an ``Effects`` field directly (raw units).

:func:`make_effects` is the one place they become a frame's ``Effects``: overrides win over the
preset's mapping, the show's output level multiplies ``intensity``, ``blackout`` wins over all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

MIRROR_OFF, MIRROR_HORIZONTAL, MIRROR_VERTICAL, MIRROR_BOTH = 0, 1, 2, 3
MAX_KALEIDOSCOPE_SEGMENTS = 32
DEFAULT_STROBE_MAX_HZ = 3.0

# What each effect parameter may be: param -> (lowest, highest, integer). ``Effects.sanitized`` keeps
# values inside; a preset value outside is an error naming its key (``vjengine.mapping.preset``).
FX_RANGES: dict[str, tuple[float, float, bool]] = {
    "intensity": (0.0, 1.0, False),
    "flash": (0.0, 1.0, False),
    "zoom": (1.0, 16.0, False),
    "hue_deg": (-1e6, 1e6, False),
    "mirror": (0, 3, True),
    "kaleidoscope": (0, MAX_KALEIDOSCOPE_SEGMENTS, True),
    "kaleidoscope_deg": (-1e6, 1e6, False),
    "feedback": (0.0, 0.99, False),
    "feedback_zoom": (0.5, 2.0, False),
    "strobe_hz": (0.0, 1000.0, False),
}


@dataclass
class Effects:
    """Post-effect parameters; the defaults are neutral (the output is the plain blend).

    - ``intensity``: output gain, 0..1 (0 = black, 1 = as blended).
    - ``flash``: beat flash, 0..1, mix toward white (the mapping sets an envelope per frame).
    - ``zoom``: zoom pulse, magnification about the centre, >= 1.
    - ``hue_deg``: hue rotation in degrees (rotation of RGB about the grey axis).
    - ``mirror``: 0 off, 1 left half mirrored onto the right, 2 top half onto the bottom, 3 both.
    - ``kaleidoscope``: number of mirrored wedges (0 or 1 = off, up to 32; even counts are seamless,
      an odd count leaves one seam); replaces ``mirror``.
    - ``kaleidoscope_deg``: rotation of the wedge pattern in degrees.
    - ``feedback``: trails, 0..0.99: fraction of the previous output kept per 1/60 s.
    - ``feedback_zoom``: magnification of the trail per 1/60 s (1 = still ghosting, 1.02 = tunnel).
    - ``strobe_hz``: requested strobe rate (0 = off).
    - ``strobe_max_hz``: the photosensitivity cap on flashes per second, strobe and beat flash rises
      together (default 3, the WCAG three-flashes limit; 0 or less allows no flashes at all).
    - ``blackout``: output black.
    """

    intensity: float = 1.0
    flash: float = 0.0
    zoom: float = 1.0
    hue_deg: float = 0.0
    mirror: int = MIRROR_OFF
    kaleidoscope: int = 0
    kaleidoscope_deg: float = 0.0
    feedback: float = 0.0
    feedback_zoom: float = 1.0
    strobe_hz: float = 0.0
    strobe_max_hz: float = DEFAULT_STROBE_MAX_HZ
    blackout: bool = False

    def sanitized(self) -> Effects:
        """A copy with every field finite and inside its range (the frame loop never raises)."""

        def num(value: float, default: float, lo: float, hi: float) -> float:
            try:
                v = float(value)
            except (TypeError, ValueError):
                return default
            return default if not math.isfinite(v) else min(max(v, lo), hi)

        values: dict[str, object] = {}
        for name, (lo, hi, integer) in FX_RANGES.items():
            default = _DEFAULTS[name]
            v = num(getattr(self, name), default, lo, hi)
            values[name] = int(v) if integer else v % 360.0 if name.endswith("_deg") else v
        return Effects(**values, strobe_max_hz=num(self.strobe_max_hz, DEFAULT_STROBE_MAX_HZ, 0.0, 1000.0),
                       blackout=bool(self.blackout))


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Effects)}

# Effects fields a preset may drive (the photosensitivity cap and blackout are show settings).
PRESET_FX_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Effects) if f.name not in ("strobe_max_hz", "blackout"))
_INT_FIELDS = frozenset(f.name for f in dataclasses.fields(Effects) if f.type in ("int", int))

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
    strobe_max_hz: float = DEFAULT_STROBE_MAX_HZ,
) -> Effects:
    """One frame's ``Effects`` (sanitized: never out of range)."""
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
