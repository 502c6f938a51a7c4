"""A bank spec from timed lyrics: the prompt axis is the song's lyric lines plus a style.

``vj-bank build BASE.toml --lyrics song.lrc -o BANK`` takes everything but the prompts from BASE
(model, steps, size, seed, other axes) and puts a non-cyclic ``lyrics`` prompt axis first: one prompt
per distinct sung line (in order of first appearance; :func:`vjengine.show.lyrics.prompt_lines`), each
``"<line>, <style>"`` where the style is the line's own (CSV ``style`` column) or ``--style`` or BASE's
``prompt``. Prompt ``i`` of ``n`` is a keyframe at axis position ``i / (n - 1)`` with ``cells_per_line``
cells to the next (slerped in-betweens), so :func:`vjengine.show.lyrics.lyric_cues` lands on it exactly.
The lines' ``negative`` prompts join BASE's ``negative_prompt``. ``--write-spec`` saves the spec.
This module never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bank_builder.errors import SpecError
from bank_builder.spec import BankSpec, spec_from_dict
from vjengine.bank.format import MAX_AXES
from vjengine.config import load_toml
from vjengine.show.lyrics import LYRICS_AXIS, LyricLine, load_lyrics, prompt_lines

_PATH_KEYS = ("model", "model_config", "decoder", "init_image")


def lyrics_table(base: dict[str, Any], lines: list[LyricLine], *, style: str | None = None,
                 cells_per_line: int = 4, source: str = "<lyrics>") -> dict[str, Any]:
    """The spec table: ``base`` with its prompt axis replaced by the lyric lines."""
    if cells_per_line < 1:
        raise SpecError(f"--cells-per-line must be >= 1, got {cells_per_line}")
    prompts = prompt_lines(lines)
    if len(prompts) < 2:
        raise SpecError(f"{source}: a lyric axis needs two or more distinct lines, found {len(prompts)}")
    default_style = style if style is not None else str(base.get("prompt", "") or "")
    texts = []
    for ln in prompts:
        s = ln.style or default_style
        texts.append(f"{ln.text}, {s}" if s else ln.text)
    negatives = [str(base.get("negative_prompt", "") or "")]
    for ln in lines:
        if ln.negative and ln.negative not in negatives:
            negatives.append(ln.negative)
    table = {k: v for k, v in base.items() if k != "axes"}
    table["negative_prompt"] = ", ".join(n for n in negatives if n)
    table.pop("prompt", None)  # the lyric axis gives the prompts
    axes = [a for a in base.get("axes", []) if not (isinstance(a, dict) and a.get("kind") == "prompt")]
    if len(axes) + 1 > MAX_AXES:
        raise SpecError(f"{source}: the base spec has {len(axes)} axes besides its prompt axis; a lyric bank "
                        f"adds one and may have at most {MAX_AXES}")
    lyric_axis = {"kind": "prompt", "name": LYRICS_AXIS, "prompts": texts,
                  "count": (len(texts) - 1) * cells_per_line + 1, "densify": cells_per_line}
    table["axes"] = [lyric_axis, *axes]
    table["description"] = f"lyrics: {len(texts)} lines from {Path(source).name}" + (
        f"; {base['description']}" if base.get("description") else "")
    return table


def load_lyrics_spec(spec_path: str | Path, lyrics_path: str | Path, *, style: str | None = None,
                     cells_per_line: int = 4) -> tuple[BankSpec, dict[str, Any]]:
    """(validated spec, its table with local paths made absolute) for BASE + lyrics."""
    spec_path = Path(spec_path)
    base = load_toml(spec_path)
    table = lyrics_table(base, load_lyrics(lyrics_path), style=style, cells_per_line=cells_per_line,
                         source=str(lyrics_path))
    for key in _PATH_KEYS:
        value = table.get(key)
        if isinstance(value, str) and value and (spec_path.parent / value).exists():
            table[key] = str((spec_path.parent / value).resolve())
    spec = spec_from_dict(table, source=f"{spec_path} + {lyrics_path}", base_dir=spec_path.parent)
    return spec, table


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    raise SpecError(f"cannot write {v!r} to a spec")


def spec_toml(table: dict[str, Any]) -> str:
    """TOML text for a spec table (scalars, lists, inline tables and the ``[[axes]]`` array)."""
    out = ["# made by vj-bank build --lyrics"]
    out += [f"{k} = {_value(v)}" for k, v in table.items() if k != "axes"]
    for axis in table.get("axes", []):
        out += ["", "[[axes]]"] + [f"{k} = {_value(v)}" for k, v in axis.items()]
    return "\n".join(out) + "\n"
