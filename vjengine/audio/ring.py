"""A preallocated single-producer / single-consumer ring of mono float32 samples.

The producer (the PortAudio callback or a file player) calls :meth:`RingBuffer.write` /
:meth:`RingBuffer.write_mix`; these never allocate, lock or log. The consumer (the render thread)
calls :meth:`RingBuffer.read` for everything that arrived since its previous read. If the consumer
falls more than the capacity behind, the oldest samples are dropped and counted as an overrun.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Mono sample ring; positions are absolute sample counts since creation."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.written = 0      # total samples written (only the producer changes it)
        self._read_pos = 0    # total samples consumed (only the consumer changes it)
        self.overruns = 0     # times the consumer lost samples because it fell behind
        self.dropped = 0      # samples lost that way

    def write(self, block: np.ndarray) -> None:
        """Append a mono block (producer side; no allocation)."""
        n = block.shape[0]
        if n > self.capacity:
            block = block[-self.capacity:]
            n = self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = block[:first]
        if first < n:
            self._buf[:n - first] = block[first:]
        self.written += n

    def write_mix(self, frames: np.ndarray, first_channel: int, n_channels: int) -> None:
        """Append the mean of ``n_channels`` adjacent channels of a ``[n, ch]`` block (no allocation)."""
        n = frames.shape[0]
        if n > self.capacity:
            frames = frames[-self.capacity:]
            n = self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        for lo, hi, out in ((0, first, self._buf[start:start + first]), (first, n, self._buf[:n - first])):
            if hi <= lo:
                continue
            if n_channels == 1:
                out[:] = frames[lo:hi, first_channel]
            else:
                np.sum(frames[lo:hi, first_channel:first_channel + n_channels], axis=1, out=out)
                out *= 1.0 / n_channels
        self.written += n

    def available(self) -> int:
        """Samples waiting for the consumer (capped at the capacity)."""
        return min(self.written - self._read_pos, self.capacity)

    def read(self, upto: int | None = None) -> np.ndarray:
        """Everything written since the previous read, oldest first (consumer side; a copy); with
        ``upto``, only the samples before that absolute position (the rest wait for a later read)."""
        end = self.written if upto is None else min(self.written, max(int(upto), self._read_pos))
        lag = end - self._read_pos
        if lag > self.capacity:
            self.overruns += 1
            self.dropped += lag - self.capacity
            self._read_pos = end - self.capacity
            lag = self.capacity
        if lag <= 0:
            return np.zeros(0, dtype=np.float32)
        start = self._read_pos % self.capacity
        first = min(lag, self.capacity - start)
        if first == lag:
            out = self._buf[start:start + lag].copy()
        else:
            out = np.concatenate([self._buf[start:], self._buf[:lag - first]])
        self._read_pos = end
        return out
