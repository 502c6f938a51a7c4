"""The bank format: the contract between the builder and the live engine."""

from vjengine.bank.format import (
    Axis,
    Bank,
    BankWriter,
    open_bank,
    read_manifest,
    validate_bank,
    write_bank,
)
from vjengine.bank.grid import neighbours

__all__ = ["Axis", "Bank", "BankWriter", "open_bank", "read_manifest", "validate_bank", "write_bank", "neighbours"]
