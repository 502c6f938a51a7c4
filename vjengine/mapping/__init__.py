"""Mapping: audio features -> bank coordinates and effect parameters (pure, deterministic).

``Preset`` (TOML, validated) + bank axes -> ``Mapper``; ``Mapper.step(frame, controls, dt_s)``
returns a :class:`MapOutput` (coordinate, fx). See ``modes`` for the mapping modes.
"""

from vjengine.mapping.features import FEATURES, read_feature
from vjengine.mapping.mapper import Controls, MapOutput, Mapper
from vjengine.mapping.modes import AxisInfo
from vjengine.mapping.preset import (
    Preset,
    PresetLibrary,
    load_preset,
    preset_from_text,
    resolve_preset_ref,
    shipped_preset_paths,
)

__all__ = [
    "FEATURES", "read_feature", "Controls", "MapOutput", "Mapper", "AxisInfo", "Preset", "PresetLibrary",
    "load_preset", "preset_from_text", "resolve_preset_ref", "shipped_preset_paths",
]
