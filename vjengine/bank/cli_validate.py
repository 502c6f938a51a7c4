"""`vj-bank validate BANK`: check a bank completely (exit code 2 with the problem if it is bad)."""

from __future__ import annotations

import argparse

from vjengine.bank.format import validate_bank
from vjengine.demo import resolve_bank_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", nargs="+", help="bank directory (one or more)")


def run(args: argparse.Namespace) -> int:
    for path in args.bank:
        bank = validate_bank(resolve_bank_path(path))
        print(f"ok  {bank!r}")
    return 0
