"""modgraph-audio: speech modalities for modgraph (``fsdd``, ``spoken``, ``gsc``), built on a shared MFCC front end.

The ``register_modalities`` hook registers them; :mod:`modgraph_audio.features` is the front end.
"""

from modgraph import hookimpl

from modgraph_audio.fsdd import FSDD, FSDDOptions
from modgraph_audio.gsc import GSC, GSCOptions
from modgraph_audio.spoken import Spoken, SpokenOptions

__all__ = ["FSDD", "FSDDOptions", "GSC", "GSCOptions", "Spoken", "SpokenOptions", "register_modalities"]


@hookimpl
def register_modalities(register):
    register(FSDD())
    register(Spoken())
    register(GSC())
