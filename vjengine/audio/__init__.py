"""The ears of the engine: capture, features, onsets, tempo and beat clock, `AudioFrame`.

Import the pieces from their modules (``vjengine.audio.engine.AudioEngine``,
``vjengine.audio.frame.AudioFrame``, ``vjengine.audio.synth.dance_loop``); this package keeps its
import light (sounddevice is loaded only when a capture source or device listing needs it).
"""
