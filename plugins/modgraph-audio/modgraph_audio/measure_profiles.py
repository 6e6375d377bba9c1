"""Measure the speech profiles of :mod:`modgraph_audio.speech_profiles` from the datasets, to paste there.

    python -m modgraph_audio.measure_profiles --data-root DATA
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from modgraph_audio.features import SpeechProfile, mfcc, read_audio, speech_profile, to_clips
from modgraph_audio.fsdd import FSDD
from modgraph_audio.gsc import GSC


def profile_of(paths: list[Path], source: str) -> SpeechProfile:
    """The profile of some recordings (read, fitted to one second at 16 kHz, MFCCs without mean normalisation)."""
    waves, rates = [], []
    for path in paths:
        wave, rate, _notes = read_audio(path)
        waves.append(torch.from_numpy(wave))
        rates.append(rate)
    return speech_profile(mfcc(to_clips(waves, rates), mean_norm=False), source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--gsc-version", default="v0.01", help="Speech Commands release to profile")
    args = parser.parse_args()
    for name, modality in (("FSDD", FSDD()), ("GSC", GSC().with_options({"version": args.gsc_version}))):
        paths, _labels, _speakers = modality.recordings(args.data_root, "train")
        version = getattr(modality.options, "version", None)
        source = f"{modality.name} {version + ' ' if version else ''}train split, {len(paths)} recordings"
        print(f"{name}_PROFILE = {profile_of(paths, source)!r}")


if __name__ == "__main__":
    main()
