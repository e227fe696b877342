"""Exception types raised by wsss_kit.

Every error message names the thing that is wrong (a file, a config key, a plugin), what was
expected and what was found, so that a user can fix it without reading the source.
"""

from __future__ import annotations

__all__ = ["AmbiguousPluginError", "BrokenPluginError", "ConfigError", "CorruptArtifactError", "DataError",
           "NumericalError", "PluginError", "PluginOutputError", "PluginVersionError", "UnknownPluginError",
           "WSSSError", "WeightsError"]


class WSSSError(Exception):
    """Base class of all errors raised on purpose by wsss_kit."""


class PluginError(WSSSError):
    """A plugin cannot be found, is ambiguous, failed to import or is incompatible."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of that kind and name is installed or registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class AmbiguousPluginError(PluginError):
    """Two distributions provide a plugin with the same kind and name."""


class BrokenPluginError(PluginError):
    """A plugin's entry point failed to load."""


class PluginVersionError(PluginError):
    """A plugin was written for an incompatible interface version."""


class ConfigError(WSSSError, ValueError):
    """A run configuration is malformed; the message names the config path of the bad key."""


class DataError(WSSSError, ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


class WeightsError(WSSSError, FileNotFoundError):
    """Pretrained weights could not be found or loaded; the message says what file is expected."""


class PluginOutputError(WSSSError):
    """A plugin returned something its interface does not allow (shape, dtype, range, NaN); the
    message names the plugin, its distribution, the items and the tensor."""


class CorruptArtifactError(DataError):
    """A file of the run directory exists but cannot be read (e.g. truncated by a disk problem);
    ``path`` is the file. The runner removes it and recomputes it."""

    def __init__(self, message: str, path: "str | object" = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # keep ``path`` when raised in a DataLoader worker and re-raised here
        return (type(self), (str(self), self.path))


class NumericalError(WSSSError, FloatingPointError):
    """Training met a non-finite number (NaN or inf) in a loss term, a gradient, a parameter or a
    buffer; the message names the step and the tensor. The last checkpoint holding only finite
    values is kept."""
