"""Opt-in: a small bank from a real Stable Diffusion model on disk (VJ_REAL_MODEL=folder or .safetensors).

Slow on a CPU (a real UNet step at 512x512 takes ~7 s here), so it runs at 256x256 with 2 steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from _builder_fixtures import require_build_extra, write_spec

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]


@pytest.mark.skipif(not os.environ.get("VJ_REAL_MODEL"), reason="set VJ_REAL_MODEL to a real SD 1.x/2.x model to run")
def test_real_model_small_bank(tmp_path):
    require_build_extra()
    from bank_builder.build import BuildOptions, build_bank
    from bank_builder.spec import load_spec
    from vjengine.bank import validate_bank

    model = Path(os.environ["VJ_REAL_MODEL"]).resolve()
    config = os.environ.get("VJ_REAL_MODEL_CONFIG")
    extra = f'model_config = "{config}"\n' if config else ""
    text = (f'model = "{model}"\n{extra}steps = 2\nguidance = 1.0\nsize = [256, 256]\nseed = 1\n'
            'prompt = "a lighthouse at night, oil painting"\n'
            '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 3\ndensify = 2\n')
    spec = load_spec(write_spec(tmp_path, text))
    result = build_bank(spec, tmp_path / "bank", BuildOptions(progress=False))
    bank = validate_bank(result.path)
    assert bank.count == 3 and np.asarray(bank.frames).std() > 5
