"""`vj` and `vj-bank`: one dispatcher, each subcommand in its own module.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``vj --help`` stays instant and ``vj live`` never pulls
in the bank builder (and with it torch).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vjengine.errors import VJError

# name -> (module, one-line help)
VJ_COMMANDS: dict[str, tuple[str, str]] = {
    "live": ("vjengine.app", "play one or more banks, reacting to line-in audio"),
    "demo": ("vjengine.demo_cmd", "play the built-in demo bank to the built-in demo loop"),
    "still": ("vjengine.render.still", "render one frame of a bank headless to a PNG"),
    "render": ("vjengine.offline", "render a song (or a recorded set) offline to mp4"),
    "analyze": ("vjengine.audio.analyze", "run the live audio analysis over a file"),
    "lyrics": ("vjengine.show.transcribe", "timed lyrics (.lrc) from a song by a speech model (optional extra)"),
    "devices": ("vjengine.audio.devices", "list audio input devices"),
    "monitors": ("vjengine.render.monitors", "list monitors for --monitor"),
    "osc-monitor": ("vjengine.control.osc_monitor", "print OSC messages as they arrive, and rejects"),
}

BANK_COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("vjengine.bank.cli_info", "print a bank's manifest and sizes"),
    "validate": ("vjengine.bank.cli_validate", "check a bank completely"),
    "compress": ("vjengine.bank.cli_compress", "convert a bank's frames to GPU block compression (bc1, bc7)"),
    "repair": ("vjengine.bank.cli_repair", "re-make the frames that fail their checksum (from the build's work folder, else decoded again from their latents)"),
    "build": ("bank_builder.cli_build", "bake a bank from a TOML spec (needs the build extra)"),
    "preview": ("bank_builder.cli_preview", "contact sheet PNG (or --path mp4) of a bank"),
    "selftest": ("bank_builder.cli_selftest", "bake tiny random-weight banks end to end (no downloads), then clean up"),
}



# Libraries whose debug output drowns ours under -v (matplotlib lists every font it finds).
QUIET_LOGGERS = ("matplotlib", "PIL", "numba", "asyncio", "urllib3", "filelock", "fsspec", "httpx", "httpcore")


def _build_parser(prog: str, commands: dict[str, tuple[str, str]], argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    # -v after the command works too: the subparsers know it, without overriding one given before
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen command's module is imported to add its arguments.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[verbose])
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(command_module=module)
    return parser


def _dispatch(prog: str, commands: dict[str, tuple[str, str]], argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = _build_parser(prog, commands, argv)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "diffusers", "transformers"}:
            print(f"{prog}: error: this command needs the build extra: pip install 'vjengine[build]' ({exc})",
                  file=sys.stderr)
            return 2
        raise
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("vjengine.cli").debug("%s %s", prog, " ".join(argv))
    try:
        return int(args.command_module.run(args) or 0)
    except VJError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vj-bank info BANK | head`
        sys.stderr.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    return _dispatch("vj", VJ_COMMANDS, argv)


def bank_main(argv: list[str] | None = None) -> int:
    return _dispatch("vj-bank", BANK_COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
