"""Exceptions raised by asyncsnn.

Every error that bad input can cause is a :class:`ValueError` subclass whose message names the
field and the allowed range. They are defined once, in the native module, and re-exported here.
"""

from ._native import (
    ConfigError,
    InputError,
    InternalError,
    MappingError,
    NetworkError,
    RunawayError,
)

# Named where they are imported from, so that they pickle (an error raised in a worker process
# reaches the caller as itself): pickle finds a class by its module and name.
for _cls in (ConfigError, InputError, InternalError, MappingError, NetworkError, RunawayError):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "ConfigError",
    "InputError",
    "InternalError",
    "MappingError",
    "NetworkError",
    "RunawayError",
]
