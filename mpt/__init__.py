"""Margin Preserving Training: losses, metrics, models, data and training for classifier
upgrades that keep what the old model got right.

Subpackages: `mpt.losses`, `mpt.methods`, `mpt.metrics`, `mpt.models`, `mpt.data`, `mpt.train`,
`mpt.io`, `mpt.evaluate`, `mpt.upgrade`. Importing `mpt` loads none of them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
