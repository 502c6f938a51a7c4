"""`vj-bank validate BANK`: check a bank completely (exit code 2 with the problem if it is bad).

A version 2 bank is checked frame by frame against its checksum table; the error names each bad
frame's index and grid cell.
"""

from __future__ import annotations

import argparse

from vjengine.bank.format import validate_bank
from vjengine.demo import resolve_bank_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", nargs="+", help="bank directory (one or more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    for path in args.bank:
        bank = validate_bank(resolve_bank_path(path), progress=not args.no_progress)
        checked = ("every frame matches its checksum" if bank.checksums is not None
                   else "version 1: no checksums to check")
        print(f"ok  {bank!r} ({checked})")
    return 0
