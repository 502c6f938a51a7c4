"""The small exception hierarchy shared by the CLI and the library.

Anything derived from :class:`VJError` is a problem with the user's input (a bad bank, preset,
argument or device). The CLI prints it as one clear line and exits with code 2.
"""


class VJError(Exception):
    """A user-facing error: the message names the file, key or value at fault."""

    exit_code = 2


class BankError(VJError):
    """A bank directory that is missing, incomplete or corrupt."""


class ConfigError(VJError):
    """A preset, cue sheet, setlist or build spec that does not validate."""


class DeviceError(VJError):
    """An audio device, monitor or GL context that cannot be opened."""
