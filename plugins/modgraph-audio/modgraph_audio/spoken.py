"""The ``spoken`` modality: spoken digits from any voice, FSDD's five speakers plus Speech Commands voices.

``fsdd`` learns from five speakers, as the paper's experiments do, and reads people it never
heard far worse. ``spoken`` is the same front end, VAE and test split with up to 100 Speech
Commands clips of each digit word by its training speakers added to the training split
(docs/results/voices.md says what that buys and costs).
"""

from __future__ import annotations

from pathlib import Path

from modgraph import DatasetInfo
from modgraph_audio import speech_embedding as E
from modgraph_audio.fsdd import CONCEPTS, FSDD, FSDDOptions

# Speech Commands clips of each digit word a node adds when the release holds them.
SPEECH_COMMANDS_CLIPS = 100


class SpokenOptions(FSDDOptions.with_defaults(speech_commands=None)):
    """Options of the ``spoken`` modality: fsdd's, with Speech Commands voices settled from the data."""


class Spoken(FSDD):
    """Spoken digits 0-9 learnt from FSDD and Speech Commands speakers; tested on FSDD's test split."""

    name = "spoken"
    description = ("spoken digits 0-9 from any voice: FSDD plus Speech Commands digit words, as 40x101 MFCCs "
                   "of 1 s at 16 kHz, plus a pretrained speech embedding (Google's, option speech_embedding)")
    dataset = DatasetInfo(name="Free Spoken Digit Dataset and Speech Commands (digit words)",
                          licence=f"CC BY-SA 4.0 (FSDD), CC BY 4.0 (Speech Commands); {E.LICENCE}",
                          url="https://github.com/Jakobovski/free-spoken-digit-dataset",
                          citation="Z. Jackson et al., Free Spoken Digit Dataset (FSDD); P. Warden, Speech Commands: "
                                   "A Dataset for Limited-Vocabulary Speech Recognition (arXiv:1804.03209), 2018")
    # fsdd's, less the spread balance within speakers: a Speech Commands speaker says one or two
    # digits, not every digit equally often.
    training_defaults = FSDD.training_defaults.model_copy(update={"link_spread_balance": None})
    options_model = SpokenOptions
    options: SpokenOptions

    def for_data(self, root: Path, download: bool = False) -> tuple["Spoken", list[str]]:
        """``speech_commands`` unset: 100 clips a digit word when a Speech Commands release holds them, else 0."""
        if self.options.speech_commands is not None:
            return self, []
        from modgraph_audio.gsc import GSC

        folder = GSC().folder(root)
        found = any(any((folder / word).glob("*.wav")) for word in CONCEPTS if (folder / word).is_dir())
        clips = SPEECH_COMMANDS_CLIPS if found else 0
        settled = self.with_options({**self.options.model_dump(), "speech_commands": clips})
        if found:
            return settled, [f"spoken: FSDD plus up to {clips} Speech Commands clips of each digit word from {folder}"]
        return settled, [f"spoken: no Speech Commands digit words in {folder}, so this node learns FSDD's five "
                         f"speakers alone, as fsdd does; put the release there for the voices it is for "
                         f"(add-modality gsc --download fetches it)"]
