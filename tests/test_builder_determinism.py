"""A cell's bytes are a pure function of (spec, cell): batch size, batch order, resumes and an
out-of-memory retry do not change one byte of the bank on the CPU (the Ray build relies on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _builder_fixtures import require_build_extra, tiny_model, write_spec  # noqa: F401

require_build_extra()

import torch  # noqa: E402

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.spec import load_spec  # noqa: E402

FILES = ("manifest.json", "frames.safetensors", "latents.safetensors", "reports/seams.json")


def spec_text(model: Path) -> str:
    # guidance 1.0 (no CFG) and > 1 (CFG) in the same batches; an ancestral scheduler (per-step noise)
    return (f'model = "{model}"\nscheduler = "euler_a"\nsteps = 2\nsize = [32, 32]\nseed = 5\n'
            'prompt = "a red cat"\nlatent_dtype = "float32"\n'
            '[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 6\ncyclic = true\ndensify = 2\n'
            '[[axes]]\nkind = "guidance"\nrange = [1.0, 3.0]\ncount = 3\n')


def bank_bytes(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tiny_model):
    return load_spec(write_spec(tmp_path_factory.mktemp("det"), spec_text(tiny_model)))


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("det-ref") / "bank"
    build_bank(spec, out, BuildOptions(batch_size=1, decode_batch_size=1, progress=False))
    return bank_bytes(out)


@pytest.mark.parametrize("batch, decode, shuffle", [(3, 5, 11), (8, 16, None)])
def test_batch_size_and_order_do_not_change_a_byte(spec, reference, tmp_path, batch, decode, shuffle):
    result = build_bank(spec, tmp_path / "bank", BuildOptions(batch_size=batch, decode_batch_size=decode,
                                                              shuffle_seed=shuffle, progress=False))
    assert result.made_now == 18
    got = bank_bytes(tmp_path / "bank")
    for name in FILES:
        assert got[name] == reference[name], name


def test_resume_with_another_batch_size_is_identical(spec, reference, tmp_path):
    opts = BuildOptions(batch_size=4, decode_batch_size=4, progress=False, keep_work=True,
                        work_dir=str(tmp_path / "work"))
    build_bank(spec, tmp_path / "bank", opts)
    shards = sorted((tmp_path / "work").glob("*/shards/*.safetensors"))
    # lose one keyframe batch and one in-between batch, as a kill would; resume in other batch sizes
    lost = [next(p for p in shards if p.name.startswith("key_")), next(p for p in shards if p.name.startswith("dense_"))]
    for p in lost:
        p.unlink()
    again = build_bank(spec, tmp_path / "bank", BuildOptions(batch_size=3, decode_batch_size=2, shuffle_seed=2,
                                                             progress=False, work_dir=str(tmp_path / "work")))
    assert 0 < again.made_now <= 8  # only the lost cells were made again
    got = bank_bytes(tmp_path / "bank")
    for name in FILES:
        assert got[name] == reference[name], name


def test_out_of_memory_on_the_first_batch_halves_and_completes(spec, reference, tmp_path, monkeypatch):
    from bank_builder.pipeline import Generator

    real_generate, real_decode = Generator._generate, Generator._decode
    failed = {"generate": [], "decode": []}

    def generate(self, cells):
        if not failed["generate"] and len(cells) > 1:  # the first batch does not fit
            failed["generate"].append(len(cells))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(self, cells)

    def decode(self, latents):
        if not failed["decode"] and len(latents) > 2 and failed["generate"]:  # then a decode (of a keyframe batch)
            failed["decode"].append(len(latents))
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_decode(self, latents)

    monkeypatch.setattr(Generator, "_generate", generate)
    monkeypatch.setattr(Generator, "_decode", decode)
    result = build_bank(spec, tmp_path / "bank", BuildOptions(batch_size=4, decode_batch_size=6, progress=False))
    assert failed == {"generate": [4], "decode": [4]}
    assert result.retries == 2 and result.made_now == 18
    got = bank_bytes(tmp_path / "bank")
    for name in FILES:
        assert got[name] == reference[name], name


def test_out_of_memory_at_batch_one_is_a_clear_error_and_leaves_nothing(spec, tmp_path, monkeypatch):
    from bank_builder.errors import OutOfMemoryError
    from bank_builder.pipeline import Generator

    def generate(self, cells):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Generator, "_generate", generate)
    with pytest.raises(OutOfMemoryError, match=r"batch of 1 at 32x32: try a smaller size"):
        build_bank(spec, tmp_path / "bank", BuildOptions(batch_size=2, progress=False))
    assert not (tmp_path / "bank").exists() and not (tmp_path / "bank.work").exists()
