"""`AudioFrame`: the frozen per-frame audio snapshot the mapping, HUD and OSC-out read."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from vjengine.audio.features import DEFAULT_BANDS

_ZERO_CHROMA = (0.0,) * 12


def _silent_bands() -> Mapping[str, float]:
    return MappingProxyType({name: 0.0 for name, _, _ in DEFAULT_BANDS})


@dataclass(frozen=True)
class AudioFrame:
    """What the audio analysis knows at one video frame. All values are plain Python types.

    Units and ranges (``0..1`` values are normalised by the adaptive gain and gated to 0 in silence):

    - ``time_s``: audio-stream time of the last analysed sample, seconds since the source started.
    - ``rms``: RMS of the last hop, linear full scale (a full-scale sine is ~0.707).
    - ``rms_db``: the same in dBFS (``-120`` for digital silence).
    - ``level``: loudness 0..1 after adaptive gain, noise gate and an attack/release envelope.
    - ``bands``: read-only mapping band name -> 0..1 (defaults: sub, bass, low_mid, mid, high_mid,
      high), each with adaptive gain and an attack/release envelope. ``band_names`` keeps their order.
    - ``centroid``: spectral centroid 0..1 on a log scale from 100 Hz (0) to 10 kHz (1);
      ``centroid_hz`` the raw value in Hz.
    - ``onset_strength``: spectral-flux onset strength 0..1 of the last hop.
    - ``onset``: True if an onset fired since the previous frame; ``onset_env`` 1 at an onset, then
      decays (release ~``onset_release_ms``).
    - ``kick``: True if a kick (low-band flux onset) fired since the previous frame; ``kick_env``
      its decaying envelope 0..1.
    - ``chroma``: 12 pitch-class energies (C, C#, ... B), max-normalised 0..1, smoothed.
    - ``bpm``: current tempo in beats per minute (auto, tapped or manual, see ``tempo_source``).
    - ``beat_phase``: 0..1 through the current beat, continuous and monotonic (never jumps while
      locked). It runs ahead of the audio by ``latency_ms`` (output latency compensation) plus half a
      frame interval, so each beat lands on the frame nearest to it.
    - ``bar_phase``: 0..1 through the current bar (``beats_per_bar`` beats: 3 or 4, detected),
      ``beat_in_bar`` 0-based. ``downbeat_confidence`` 0..1: how sure the analysis is which beat is 1.
    - ``beat_count``: beats since the clock started (increments when ``beat`` fires).
    - ``beat``: True on the frame where ``beat_count`` advanced (only while ``locked``): the frame
      nearest each beat. ``bar`` True when that beat is a downbeat (``beat_in_bar == 0``) and the
      downbeat is known with confidence (``downbeat_confidence`` >= the analysis threshold, or set by
      ``/vj/resync``); ``bar_phase``, ``beat_in_bar`` and ``beats_per_bar`` follow the last confident
      downbeat and metre (before the first, bars of 4 counted from the clock's start).
      ``beat_env`` 1 at the beat, decaying over the beat.
    - ``locked``: the beat clock follows the music with confidence ``confidence`` 0..1.
    - ``tempo_source``: "auto", "tap" or "manual".
    - ``input_ok``: the source is delivering audio; ``input_status`` a human-readable line for the
      HUD ("pulse 48 kHz, 0 overruns", "device lost, retrying").
    - ``gate_open``: the input is above the noise gate.
    - ``hops``: how many analysis hops this frame covered (0 when no new audio arrived).
    - ``key``: 0..23 (C..B major, then C..B minor; -1 before enough music), ``key_confidence`` 0..1;
      ``chord`` the same for the current triad (-1: none), ``chord_confidence`` 0..1, ``chord_change``
      True on the frame the chord changed; ``harmony_hue`` 0..1 the chord's place on the circle of
      fifths (minor with its relative major), smoothed (:mod:`vjengine.audio.harmony`).
    - ``drums`` / ``harmonic``: 0..1 levels of the percussive and harmonic parts (streaming HPSS,
      :mod:`vjengine.audio.hpss`), adaptive gain and envelope like the bands.
    - ``stems``: read-only mapping stem name -> 0..1 level. Live: ``drums`` and ``harmonic`` (the HPSS
      levels above); `vj render --stems`: the levels of the separated stems (``drums``, ``bass``,
      ``other``, ``vocals`` from a stem model, or ``drums``/``harmonic`` from offline HPSS).
    """

    time_s: float = 0.0
    rms: float = 0.0
    rms_db: float = -120.0
    level: float = 0.0
    bands: Mapping[str, float] = field(default_factory=_silent_bands)
    band_names: tuple[str, ...] = tuple(name for name, _, _ in DEFAULT_BANDS)
    centroid: float = 0.0
    centroid_hz: float = 0.0
    onset_strength: float = 0.0
    onset: bool = False
    onset_env: float = 0.0
    kick: bool = False
    kick_env: float = 0.0
    chroma: tuple[float, ...] = _ZERO_CHROMA
    bpm: float = 120.0
    beat_phase: float = 0.0
    bar_phase: float = 0.0
    beat_in_bar: int = 0
    beats_per_bar: int = 4
    beat_count: int = 0
    beat: bool = False
    bar: bool = False
    beat_env: float = 0.0
    locked: bool = False
    confidence: float = 0.0
    tempo_source: str = "auto"
    input_ok: bool = False
    input_status: str = "no audio yet"
    gate_open: bool = False
    hops: int = 0
    downbeat_confidence: float = 0.0
    key: int = -1
    key_confidence: float = 0.0
    chord: int = -1
    chord_confidence: float = 0.0
    chord_change: bool = False
    harmony_hue: float = 0.0
    drums: float = 0.0
    harmonic: float = 0.0
    stems: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def silent(cls, status: str = "no audio yet", *, time_s: float = 0.0) -> "AudioFrame":
        """The snapshot before any audio arrived (everything dark, clock unlocked at 120 BPM)."""
        return cls(time_s=time_s, input_status=status)

    @classmethod
    def from_fields(cls, values: dict) -> "AudioFrame":
        """Build from a dict holding every field (the analyser's per-frame path: it skips the
        frozen dataclass ``__init__``, which costs ~10 us a frame). Raises on a missing or unknown key."""
        if values.keys() != cls.__dataclass_fields__.keys():
            raise TypeError(f"AudioFrame.from_fields: fields differ: {set(values) ^ set(cls.__dataclass_fields__)}")
        frame = object.__new__(cls)
        frame.__dict__.update(values)
        return frame

    def band(self, name: str) -> float:
        """One band's 0..1 value; 0.0 for an unknown name (the mapping never raises)."""
        return float(self.bands.get(name, 0.0))

