"""vjengine: a real-time, audio-reactive VJ engine that plays precomputed latent banks.

The live engine never imports torch or diffusers; those belong to ``bank_builder`` (the
``build`` extra), which bakes banks before the gig.
"""

__version__ = "0.1.0"
