"""What an augmented copy reconstructs: itself (Eq. 6) or the original it was made from."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from modgraph.errors import ConfigError
from modgraph.learning.models import VAE, VAEConfig
from modgraph.learning.training import TrainSettings, original_rows, train_vae

QUICK = dict(epochs=1, recognizer_epochs=1)


def test_original_rows_point_copies_at_their_original():
    origin = torch.tensor([0, 1, 2, 0, 1, 2, 0, 7])
    augmented = torch.tensor([False, False, False, True, True, True, True, True])
    # row 7 is a copy whose original was left out (e.g. held out for validation): it keeps itself
    assert original_rows(origin, augmented).tolist() == [0, 1, 2, 0, 1, 2, 0, 7]
    shuffled = torch.tensor([3, 0, 5, 1])  # rows in another order: positions, not origins
    assert original_rows(origin[shuffled], augmented[shuffled]).tolist() == [1, 1, 2, 3]


def test_train_vae_compares_the_reconstruction_with_the_target_row():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    settings = TrainSettings(epochs=40, batch_size=16, lr=1e-2, kl_weight=0.0, seed=0, progress=False)
    config = VAEConfig(input_shape=(1, 4, 4), latent_dim=2, architecture="mlp", hidden=[32], output="sigmoid")

    def trained(target_rows):
        torch.manual_seed(0)
        vae = VAE(config)
        # validated on row 0 alone, so the best state is not the first one (its loss falls in both runs)
        train_vae(vae, x, x[:1], "bce", settings, target_rows=target_rows)
        with torch.no_grad():
            return torch.sigmoid(vae.decode_logits(vae.encode(x)[0]))

    plain = trained(None)
    # every row aims at row 0: the decoder learns to draw row 0 whatever it is shown
    to_row0 = trained(torch.zeros(64, dtype=torch.long))
    assert (to_row0 - x[0]).abs().mean() < 0.5 * (plain - x[0]).abs().mean()
    assert (plain - x).abs().mean() < (to_row0 - x).abs().mean()
    with pytest.raises(ConfigError, match="one row index per training row"):
        train_vae(VAE(config), x, x[:8], "bce", settings, target_rows=torch.zeros(3, dtype=torch.long))


def test_add_modality_takes_the_setting_records_it_and_trains_differently(mg, toy_data):
    options = {"copies": 2}
    mg.add_modality("toyimg", options=options, **QUICK)
    node = mg.graph().nodes["toyimg"]
    assert node["training"]["vae_target"] == mg.modality("toyimg").training_defaults.vae_target == "input"
    plain = load_file(mg.registry.node_path("toyimg"))
    mg.add_modality("toyimg", options=options, vae_target="original", **QUICK)
    assert mg.graph().nodes["toyimg"]["training"]["vae_target"] == "original"
    denoising = load_file(mg.registry.node_path("toyimg"))
    assert any(not torch.equal(plain[k], denoising[k]) for k in plain if k.startswith("vae."))
    with pytest.raises(ConfigError, match="vae_target"):
        mg.add_modality("toyimg", vae_target="copy", **QUICK)
