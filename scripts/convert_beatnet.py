"""Convert BeatNet's published CRNN weights (PyTorch state dict) to the .npz the engine loads.

Run once, in the dev environment (it needs torch), on the wheel from PyPI:

    pip download BeatNet==1.1.3 --no-deps -d /tmp/beatnet
    python scripts/convert_beatnet.py /tmp/beatnet/BeatNet-1.1.3-py3-none-any.whl

The state dict is read with ``torch.load(weights_only=True)``, which refuses anything but tensors
and plain containers (no pickled code runs), straight from the wheel without unpacking it. The
result, ``vjengine/audio/models/beatnet_crnn.npz``, is plain float32 arrays: the live engine reads it
with ``numpy.load(allow_pickle=False)`` and never imports torch.

BeatNet (Heydari, Cwitkowitz and Duan, ISMIR 2021, https://github.com/mjhydri/BeatNet) and its
weights are licensed CC BY 4.0; see NOTICE. Model 1 (the one trained without GTZAN) is converted.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "vjengine" / "audio" / "models" / "beatnet_crnn.npz"
MEMBER = "BeatNet/models/model_{}_weights.pt"
sys.path.insert(0, str(REPO))
from vjengine.audio.learned import WEIGHT_SHAPES as EXPECTED  # noqa: E402  (name -> shape)


def load_state(source: Path, model: int) -> dict[str, np.ndarray]:
    """The state dict of BeatNet model ``model`` from the wheel (or a .pt file), as float32 arrays."""
    import torch  # dev/build environment only

    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as z:
            data = z.read(MEMBER.format(model))
    else:
        data = source.read_bytes()
    state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    out = {}
    for name, shape in EXPECTED.items():
        if name not in state:
            raise SystemExit(f"{source}: no tensor {name!r} in model {model}")
        arr = state[name].detach().cpu().numpy().astype(np.float32)
        if arr.shape != shape:
            raise SystemExit(f"{source}: {name} has shape {arr.shape}, expected {shape}")
        out[name] = arr
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="BeatNet-1.1.3-py3-none-any.whl or a model_N_weights.pt")
    ap.add_argument("--model", type=int, default=1, choices=(1, 2, 3))
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    state = load_state(args.source, args.model)
    arrays = {k.replace(".", "_"): v for k, v in state.items()}
    arrays["source"] = np.array(f"BeatNet 1.1.3 model_{args.model}_weights.pt, CC BY 4.0, "
                                "Heydari, Cwitkowitz and Duan, https://github.com/mjhydri/BeatNet")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
