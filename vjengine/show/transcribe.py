"""`vj lyrics SONG --model PATH -o song.lrc`: timed lyrics by a speech model (the optional extra).

For a song without a lyric file: a Whisper model transcribes it and each recognised segment becomes
one ``.lrc`` line (``[mm:ss.xx]text``), ready for ``vj-bank build --lyrics`` and ``vj render --lyrics``
(edit it first: sung words are hard). Two back ends, whichever is installed (``pip install
'vjengine[transcribe]'`` installs faster-whisper): ``faster_whisper`` with a CTranslate2 model folder,
or ``whisper`` (openai-whisper) with a ``.pt`` file. Nothing is downloaded: ``--model`` is a path to
weights the user fetched; without the package or the weights the command says what to get (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vjengine.errors import ConfigError

_HOW = ("download a Whisper model first (for faster-whisper: a CTranslate2 folder such as "
        "Systran/faster-whisper-small; for openai-whisper: a .pt file such as small.pt) and pass its path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("song", help="audio file")
    parser.add_argument("--model", required=True, help="local Whisper weights: a faster-whisper folder or a .pt file")
    parser.add_argument("-o", "--output", default=None, help="the .lrc to write (default: SONG.lrc)")
    parser.add_argument("--language", default=None, help="language code (default: detected)")


def lrc_time(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60.0)
    return f"[{int(m):02d}:{s:05.2f}]"


def transcribe(song: str | Path, model: str | Path, language: str | None = None) -> list[tuple[float, str]]:
    """``[(start_s, text), ...]`` per recognised segment."""
    model = Path(model)
    if not model.exists():
        raise ConfigError(f"{model}: speech model weights not found: {_HOW}")
    try:
        from faster_whisper import WhisperModel  # noqa: PLC0415
    except ModuleNotFoundError:
        WhisperModel = None  # noqa: N806
    if WhisperModel is not None and model.is_dir():  # pragma: no cover - needs downloaded weights
        segments, _ = WhisperModel(str(model), device="auto").transcribe(str(song), language=language)
        return [(float(s.start), s.text.strip()) for s in segments if s.text.strip()]
    try:
        import whisper  # noqa: PLC0415
    except ModuleNotFoundError:
        raise ConfigError("transcription needs a speech-recognition package: `pip install 'vjengine[transcribe]'` "
                          f"(faster-whisper) or `pip install openai-whisper`; then {_HOW}") from None
    if not model.is_file():  # pragma: no cover - needs the package
        raise ConfigError(f"{model}: openai-whisper wants a .pt weights file: {_HOW}")
    result = whisper.load_model(str(model)).transcribe(str(song), language=language)  # pragma: no cover
    return [(float(s["start"]), s["text"].strip()) for s in result["segments"] if s["text"].strip()]  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    song = Path(args.song)
    if not song.is_file():
        raise ConfigError(f"{song}: no such audio file")
    lines = transcribe(song, args.model, args.language)
    out = Path(args.output) if args.output else song.with_suffix(".lrc")
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text("".join(f"{lrc_time(t)}{text}\n" for t, text in lines), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}: {len(lines)} lines (check them: sung words are hard to recognise)")
    return 0
