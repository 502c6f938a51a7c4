"""The analyser's music-video features: harmony (key, chord, hue) and drums/harmonic levels (HPSS).

One :class:`MusicFeatures` per :class:`~vjengine.audio.analyzer.Analyzer`, fed every batch of hops
with the front end's features. Both parts run at fixed hop indices, so the result does not depend on
how the audio was blocked: HPSS every 4th hop (:class:`~vjengine.audio.hpss.StreamingHPSS`), harmony
every 8th hop (~45 ms) on that hop's chroma (zero while the gate is closed:
:class:`~vjengine.audio.harmony.HarmonyTracker`). :meth:`fields` gives the AudioFrame fields.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from vjengine.audio.harmony import HarmonyTracker
from vjengine.audio.hpss import StreamingHPSS

HARMONY_EVERY = 16
_ZERO12 = (0.0,) * 12


class MusicFeatures:
    def __init__(self, n_mels: int, *, hop_s: float) -> None:
        self.hpss = StreamingHPSS(n_mels, hop_s=hop_s)
        self.harmony = HarmonyTracker()
        self.n_mels = n_mels
        self._dt = HARMONY_EVERY * hop_s
        self._change = False

    def process(self, first_hop: int, onset_db: np.ndarray, chroma: np.ndarray, gates: list) -> None:
        """A batch: hop index of its first hop, mel dB ``[>= n_mels, m]``, chroma ``[12, m]``, gates."""
        self.hpss.process(onset_db[:self.n_mels], first_hop=first_hop, db=True)
        m = chroma.shape[1]
        j = (-first_hop) % HARMONY_EVERY
        while j < m:
            c = chroma[:, j].tolist() if gates[j] else _ZERO12
            if self.harmony.update(c, self._dt).chord_change:
                self._change = True
            j += HARMONY_EVERY

    def fields(self) -> dict:
        """The AudioFrame fields (``chord_change`` is True once per change, then cleared)."""
        s = self.harmony.state
        change, self._change = self._change, False
        return {"key": s.key, "key_confidence": s.key_confidence, "chord": s.chord,
                "chord_confidence": s.chord_confidence, "chord_change": change, "harmony_hue": s.hue,
                "drums": self.hpss.drums, "harmonic": self.hpss.harmonic,
                "stems": MappingProxyType({"drums": self.hpss.drums, "harmonic": self.hpss.harmonic})}
