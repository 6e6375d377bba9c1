"""The speech profiles the audio modalities write their wavs with (see ``features.restore_speech``).

Each is :func:`modgraph_audio.features.speech_profile` of a dataset's training recordings
(originals, no augmented copies), fixed here so that writing audio needs neither the data
nor anything stored with a trained model. Recompute them (:mod:`modgraph_audio.measure_profiles`)
and paste them here after changing the front end:

    python -m modgraph_audio.measure_profiles --data-root DATA
"""

from __future__ import annotations

from modgraph_audio.features import SpeechProfile

# FSDD's recordings are 8 kHz: nothing above 4 kHz, so its envelope falls ~50 dB over the top mel bands.
FSDD_PROFILE = SpeechProfile(
    envelope=(111.58, -41.67, 43.12, -16.55, -13.18, -0.96, -14.79, 2.38, -5.84, -0.61, -3.47, -0.7, -1.23, -4.01,
              -0.88, -5.55, -1.17, -2.46, -4.53, 1.86, -4.52, 0.42, -0.5, -4.17, 0.72, -2.39, -1.33, -0.21, -1.46,
              0.94, -0.81, 0.17, 0.52, -1.4, 0.13, -0.92, -0.51, -0.56, -0.08),
    spread=(77.46, 32.53, 21.72, 17.1, 14.39, 10.56, 9.99, 7.94, 8.16, 6.69, 6.11, 6.27, 6.8, 5.97, 4.93, 5.48,
            5.79, 4.86, 4.32, 4.56, 4.64, 4.85, 3.86, 3.83, 4.13, 3.86, 3.5, 3.34, 3.54, 3.45, 3.15, 3.07, 2.94,
            3.07, 2.84, 2.62, 2.72, 2.73, 2.59, 2.38),
    source='fsdd train split, 2250 recordings')

# From the 300-clip v0.01 sample (the full sets were not at hand); recompute with --gsc-version v0.02.
GSC_PROFILE = SpeechProfile(
    envelope=(52.4, -1.46, 7.46, -6.35, -2.76, -7.27, -0.95, -3.09, 0.79, -4.63, -0.33, -4.7, 0.75, -4.99, 0.12,
              -4.69, -0.01, -2.55, -0.47, -2.03, 1.01, -1.12, 0.85, -0.04, 0.67, -0.86, 0.61, -1.11, -0.3, -1.11,
              -0.09, -0.97, 0.31, -0.47, 0.53, 0.06, 0.11, -0.22, 0.19),
    spread=(97.52, 40.8, 23.21, 16.98, 15.21, 13.5, 11.37, 9.69, 8.7, 8.36, 7.63, 7.53, 7.46, 6.65, 6.7, 5.73, 6.06,
            5.5, 5.39, 5.27, 5.34, 5.01, 5.11, 4.94, 4.88, 4.69, 4.68, 4.35, 4.22, 3.99, 3.95, 3.66, 3.7, 3.51,
            3.42, 3.17, 3.01, 2.83, 2.75, 2.77),
    source='gsc v0.01 train split, 109 recordings')
