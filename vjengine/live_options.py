"""The options `vj live` and `vj demo` share (banks, presets, audio, output, show, OSC)."""

from __future__ import annotations

import argparse

DEFAULT_HEADLESS_DURATION_S = 10.0


def add_show_arguments(parser: argparse.ArgumentParser, *, banks: bool = True) -> None:
    """Options shared by `vj live` and `vj demo`."""
    if banks:
        parser.add_argument("banks", nargs="+", metavar="BANK",
                            help="bank directories (switch with the bank command), or one setlist .toml")
    parser.add_argument("--preset", action="append", default=None, metavar="P",
                        help="preset name or .toml path (repeat to add several; the first starts). "
                             "Default: the shipped presets")
    parser.add_argument("--preset-dir", action="append", default=None, metavar="DIR",
                        help="add every .toml preset in DIR, and the ones saved there during the show")
    src = parser.add_argument_group("audio")
    src.add_argument("--audio-device", default=None, metavar="D", help="input device: name substring or index")
    src.add_argument("--audio-file", default=None, metavar="F",
                     help="play a WAV/FLAC file in real time instead of capturing")
    src.add_argument("--loop", action="store_true", help="loop --audio-file (the demo always loops)")
    src.add_argument("--play", action=argparse.BooleanOptionalAction, default=None,
                     help="play --audio-file (or the demo loop) to the speakers, the picture following what is "
                          "heard (default: on for `vj demo` when there is an output device, else off)")
    src.add_argument("--samplerate", type=int, default=None, help="capture sample rate in Hz")
    src.add_argument("--blocksize", type=int, default=None, help="capture block size in frames (default 256)")
    src.add_argument("--channels", default=None, metavar="LIST",
                     help="input channels to mix, 1-based, e.g. 1,2 (default: all, mixed to mono)")
    src.add_argument("--latency-ms", type=float, default=None,
                     help="output latency compensation: beat events fire this much early")
    from vjengine.audio.analyzer import add_beat_tracker_argument  # noqa: PLC0415

    add_beat_tracker_argument(src)
    out = parser.add_argument_group("output")
    out.add_argument("--fullscreen", action="store_true", help="fullscreen on --monitor")
    out.add_argument("--monitor", type=int, default=None, metavar="N", help="monitor index (see `vj monitors`)")
    out.add_argument("--size", default="1280x720", help="window (or headless) size WxH (default 1280x720)")
    out.add_argument("--fit", choices=("fit", "fill", "stretch"), default="fill",
                     help="how the bank image meets the output aspect (default fill)")
    out.add_argument("--headless", action="store_true",
                     help="render offscreen (EGL) even if a display exists; implied when there is none")
    out.add_argument("--duration", type=float, default=None, metavar="S",
                     help=f"stop after S seconds (headless default {DEFAULT_HEADLESS_DURATION_S:g})")
    out.add_argument("--fps", type=float, default=60.0, help="headless frame rate (the window follows vsync)")
    out.add_argument("--screenshot", default=None, metavar="PNG",
                     help="save the last frame here (headless default: vj-last-frame.png)")
    out.add_argument("--gpu-budget-mb", type=float, default=None, metavar="MB",
                     help="GPU memory for the banks' frames, all banks of the set together: a larger bank "
                          "streams within it (default: all of a plain bank; for compressed ones, half the free "
                          "video memory the driver reports, else 1024)")
    out.add_argument("--strobe-max-hz", type=float, default=3.0,
                     help="cap on flashes per second (photosensitivity; default 3)")
    out.add_argument("--out", action="append", default=[], metavar="URL",
                     help="also send the show to URL (repeatable): ndi://NAME, syphon://NAME, spout://NAME, "
                          "v4l2:///dev/videoN, obs://, srt://HOST:PORT, udp://HOST:PORT, http://HOST:PORT/ "
                          "(MJPEG + operator page); ?size=WxH&fps=N per URL")
    out.add_argument("--operator", action="store_true",
                     help="a second window for the VJ (preview, HUD, levels, beat lights); the projector "
                          "window stays clean")
    show = parser.add_argument_group("show")
    show.add_argument("--cues", default=None, metavar="C", help="cue sheet (.toml or .csv)")
    show.add_argument("--crossfade", type=float, default=None, metavar="S", help="bank/preset crossfade seconds")
    show.add_argument("--quantize", choices=("none", "beat", "bar"), default=None,
                      help="bank switches land on the next bar (default), beat, or at once")
    show.add_argument("--record", default=None, metavar="JSONL", help="log the show for `vj render --replay`")
    show.add_argument("--frame-hashes", default=None, metavar="TXT",
                      help="write a SHA-256 of every rendered frame (checks replays; reads pixels back)")
    show.add_argument("--stats", default=None, metavar="JSONL",
                      help="stream per-frame timing, latency and quality level to this file (JSON lines)")
    show.add_argument("--no-degrade", action="store_true",
                      help="never lower quality to hold the frame rate (default: render scale, then trails, then "
                           "blend taps go down while frames run late, and come back when there is room)")
    from vjengine.sync.live import add_sync_arguments  # noqa: PLC0415

    add_sync_arguments(parser)
    try:
        from vjengine.control.osc_args import add_osc_arguments  # noqa: PLC0415
    except ImportError:  # the OSC part not installed: run without it
        return
    add_osc_arguments(parser, out=True)
    parser.add_argument("--no-osc", action="store_true", help="do not start the OSC server")
