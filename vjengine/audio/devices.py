"""`vj devices`: list audio input devices (index, name, host API, channels, default rate)."""

from __future__ import annotations

import argparse
import json

from vjengine.audio.capture import describe_everything, list_input_devices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per device")


def run(args: argparse.Namespace) -> int:
    devices = list_input_devices()
    if args.json:
        for d in devices:
            print(json.dumps({"index": d.index, "name": d.name, "hostapi": d.hostapi, "channels": d.channels,
                              "default_samplerate_hz": d.default_samplerate_hz, "default": d.is_default}))
        return 0
    if not devices:
        print("no audio input devices found (vj live falls back to the demo audio; "
              "or pass --audio-file SONG.wav)")
        print(describe_everything())
        return 0
    print(f"{'idx':>3}  {'name':<40} {'host API':<12} {'ch':>3} {'rate Hz':>8}")
    for d in devices:
        mark = "  (default)" if d.is_default else ""
        print(f"{d.index:>3}  {d.name[:40]:<40} {d.hostapi[:12]:<12} {d.channels:>3} {d.default_samplerate_hz:>8g}{mark}")
    print('choose with --audio-device INDEX or a part of the name, e.g. --audio-device "USB"')
    return 0
