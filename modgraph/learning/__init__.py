"""The two training phases (intra-modal Eq. 6, cross-modal Eq. 7), the models, and what they train on."""
