"""Tempo from outside: the beat-clock sources (audio, tap, Ableton Link, MIDI clock) and the router
that switches between them without a phase jump. See :mod:`vjengine.sync.clock_source`."""
