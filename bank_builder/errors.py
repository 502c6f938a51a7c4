"""Builder errors: all :class:`vjengine.errors.VJError` subclasses (the CLI prints them, exit 2)."""

from __future__ import annotations

from vjengine.errors import ConfigError, VJError


class SpecError(ConfigError):
    """The bank spec does not validate; the message names the file and the key."""


class ModelNotFoundError(VJError):
    """The model (or decoder) named in the spec cannot be found or loaded."""


class OutOfMemoryError(VJError):
    """The device ran out of memory; the message suggests a batch size or size to try."""


class BuildExtraMissing(VJError):
    """torch / diffusers are not installed."""


class WorkDirError(VJError):
    """The work directory cannot be used (locked by another build, not writable, ...)."""


class BuildError(VJError):
    """The build cannot go on (no worker left, cluster unreachable, extra missing); exit 2."""
