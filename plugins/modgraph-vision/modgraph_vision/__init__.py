"""modgraph-vision: the ``mnist``, ``fmnist`` and ``gtsrb`` image modalities.

Registered through the ``modgraph`` entry-point group like any third-party plugin.
"""

from modgraph import hookimpl
from modgraph_vision.gtsrb import GTSRB, GTSRBOptions
from modgraph_vision.mnist import MNIST, FashionMNIST

__version__ = "0.1.0"


@hookimpl
def register_modalities(register):
    register(MNIST())
    register(FashionMNIST())
    register(GTSRB())


__all__ = ["GTSRB", "GTSRBOptions", "MNIST", "FashionMNIST", "register_modalities", "__version__"]
