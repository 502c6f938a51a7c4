"""`vj demo`: the built-in demo bank and demo loop through the same frame loop as `vj live`.

No model, no sound card, no network: the procedural bank and the synthesized 124 BPM loop are made
once into the user cache. The loop plays from the file in real time (the same file source a DJ
could use), or, with ``--audio-device``, the demo bank reacts to line-in. With no display it renders
headless for ``--duration`` seconds and saves the last frame to a PNG.
"""

from __future__ import annotations

import argparse

from vjengine.app import open_audio, run_show
from vjengine.live_options import add_show_arguments
from vjengine.show.setup import build_setup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_show_arguments(parser, banks=False)


def run(args: argparse.Namespace) -> int:
    from vjengine.demo import DEMO_PRESET, demo_bank_path  # noqa: PLC0415

    if not args.preset:  # start on a preset that visibly moves with the beat
        args.preset = [DEMO_PRESET]
    from vjengine.logqueue import LogOffThread  # noqa: PLC0415

    with LogOffThread():  # as in `vj live`: log lines leave the render thread through a queue
        setup = build_setup([str(demo_bank_path())], args)
        audio, info = open_audio(args, demo=True)
        return run_show(args, setup, audio, info)
