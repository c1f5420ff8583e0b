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

__all__ = [
    "ConfigError",
    "InputError",
    "InternalError",
    "MappingError",
    "NetworkError",
    "RunawayError",
]
