"""modgraph-text: the ``text`` modality, a word or short phrase as characters.

Registered through the ``modgraph`` entry-point group (``text = "modgraph_text"``).
"""

from modgraph import hookimpl
from modgraph_text.encoding import ALPHABET, ALPHABET_SIZE, MAX_LENGTH, decode, encode, fold
from modgraph_text.spellings import CONCEPTS, Spelling, generate_spellings
from modgraph_text.text import Text, TextOptions

__version__ = "0.1.0"


@hookimpl
def register_modalities(register):
    register(Text())


__all__ = ["ALPHABET", "ALPHABET_SIZE", "CONCEPTS", "MAX_LENGTH", "Spelling", "Text", "TextOptions", "decode",
           "encode", "fold", "generate_spellings", "register_modalities", "__version__"]
