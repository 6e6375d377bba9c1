"""The associator's training input: the source encoder's sample (the paper) or its mean."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from modgraph.errors import ConfigError
from modgraph.learning.models import reparameterize
from modgraph.learning.training import source_sample


def test_zero_noise_is_the_mean_and_one_is_the_papers_sample():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(source_sample(mu, logvar, 0.0), mu)
    torch.manual_seed(1)
    paper = reparameterize(mu, logvar)
    torch.manual_seed(1)
    assert torch.allclose(source_sample(mu, logvar, 1.0), paper)
    torch.manual_seed(1)
    half = source_sample(mu, logvar, 0.5)
    assert torch.allclose(half - mu, 0.5 * (paper - mu), atol=1e-6)


def test_link_takes_the_source_modalitys_noise_records_it_and_trains_on_it(trained):
    trained.link("toyimg", "toyaudio", epochs=1, one_way=True)
    edge = trained.graph().edges["toyimg", "toyaudio"]
    default = trained.node("toyimg").modality.training_defaults.link_source_noise
    assert edge["training"]["source_noise"] == default == 1.0
    sampled = load_file(trained.registry.edge_path("toyimg", "toyaudio"))
    trained.link("toyimg", "toyaudio", epochs=1, one_way=True, source_noise=0.0)
    assert trained.graph().edges["toyimg", "toyaudio"]["training"]["source_noise"] == 0.0
    mean = load_file(trained.registry.edge_path("toyimg", "toyaudio"))
    assert any(not torch.equal(sampled[k], mean[k]) for k in sampled)
    with pytest.raises(ConfigError, match="source_noise"):
        trained.link("toyimg", "toyaudio", epochs=1, source_noise=-1.0)
