"""modgraph: cross-modal association through per-modality VAEs linked by associators.

The public API: :class:`ModGraph` (open a registry, add modalities, link, translate,
evaluate), the plugin contract (:class:`Modality`, :data:`hookimpl`, the configs,
:data:`FAITHFUL_CONFIDENCE`) and the errors. Plugins import from here and nowhere else in modgraph.
"""

import os

from modgraph.hookspecs import hookimpl

# OpenMP threads that spin while they wait for work (libgomp's default) hold on to a core that
# another process needs: on a shared 2-core machine torch ran 3 times slower on 2 threads than on
# 1, and as fast as on 1 when waiting threads sleep. Read when torch loads, so it applies when
# modgraph is imported first (the command line, our scripts); a value already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "ModGraph": "modgraph.api",
    "Modality": "modgraph.modality",
    "ClassInfo": "modgraph.modality",
    "DatasetInfo": "modgraph.modality",
    "FeatureSet": "modgraph.modality",
    "ModalityOptions": "modgraph.modality",
    "comma_separated": "modgraph.settings",
    "TrainingDefaults": "modgraph.modality",
    "Field": "pydantic",  # for a plugin's ModalityOptions fields: plugins need not import pydantic
    "VAEConfig": "modgraph.learning.models",
    "RecognizerConfig": "modgraph.learning.models",
    "AssociatorConfig": "modgraph.learning.models",
    "Registry": "modgraph.storage.registry",
    # What a plugin needs beyond the above: plugins import from ``modgraph`` only (tests/test_plugins.py).
    "FAITHFUL_CONFIDENCE": "modgraph.learning.targets",
    "write_bytes_atomically": "modgraph.storage.outputs",
    **{name: "modgraph.errors" for name in (
        "ModgraphError", "PluginError", "DuplicateModalityError", "UnknownModalityError", "NotInRegistryError",
        "NoRouteError", "RegistryCorruptError", "DataNotFoundError", "FeatureCacheError", "InputFileError",
        "ConfigError", "PairingError", "TrainingDivergedError", "ArchiveError", "DeviceOutOfMemoryError",
        "OutputPathError", "RegistryMismatchError")},
}


def __getattr__(name):
    # Lazy so that `import modgraph` (and `modgraph --help`) does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modgraph' has no attribute {name!r}")


__all__ = ["hookimpl", "__version__", *_LAZY]
