"""Every error modgraph raises on purpose.

Each message says what was asked, what exists, and what to do next; the CLI prints
them as one line, without a traceback.
"""

from __future__ import annotations


class ModgraphError(Exception):
    """Base class: an error a user can act on."""


class PluginError(ModgraphError):
    """A plugin failed to load or registered something invalid."""


class DuplicateModalityError(PluginError):
    """Two distributions registered the same modality name."""


class UnknownModalityError(ModgraphError):
    """A modality name that no installed plugin provides, or that is not in the registry."""


class NotInRegistryError(ModgraphError):
    """A modality or associator that has not been trained into the registry yet."""


class NoRouteError(ModgraphError):
    """No chain of associators leads from the source to the target."""


class RegistryCorruptError(ModgraphError):
    """A registry file is unreadable or does not match its plugin's architecture."""


class DataNotFoundError(ModgraphError):
    """A dataset is not on disk where the loader looked."""


class FeatureCacheError(ModgraphError):
    """A feature cache shard is damaged or gone (a build rewrites it)."""


class InputFileError(ModgraphError):
    """A user's input file cannot be read as the modality's kind of data."""


class ConfigError(ModgraphError):
    """An option or configuration value is invalid."""


class PairingError(ModgraphError):
    """Two modalities share no classes to pair."""


class TrainingDivergedError(ModgraphError):
    """Training produced NaN or infinite values; nothing was saved."""


class DeviceOutOfMemoryError(ModgraphError):
    """The GPU ran out of memory; nothing was saved (a smaller batch or the CPU is the way on)."""
