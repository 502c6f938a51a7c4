"""The bank builder: Stable Diffusion bakes a smooth, resumable latent bank (``vj-bank build``).

Importing this package does not import torch: the spec, the plan, the interpolation maths, the
seam report and ``vj-bank preview`` are pure numpy; torch and diffusers load only in
:mod:`bank_builder.pipeline` when a build actually runs (the ``build`` extra).
"""

BUILD_EXTRA_HINT = "pip install 'vjengine[build]'"
