"""The exceptions `mpt` raises.

Every error is a `ValueError` subclass so callers that only know the standard library
still catch bad input, while callers that care can tell the kinds apart.
"""

from __future__ import annotations

__all__ = ["DatasetError", "MPTError", "PackageError", "ShapeError"]


class MPTError(ValueError):
    """Base class for every error `mpt` raises about its inputs."""


class ShapeError(MPTError):
    """A tensor has the wrong shape, dtype or values (labels out of range, NaN logits)."""


class DatasetError(MPTError):
    """A dataset is missing, malformed, empty or inconsistent with a model's labels."""


class PackageError(MPTError):
    """A model package is corrupt, truncated or describes a model that cannot be built."""
