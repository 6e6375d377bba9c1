"""The paper's scalability claims as behaviour: growth without retraining, flexible latent sizes."""

from __future__ import annotations

import hashlib

import torch


def _hashes(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.safetensors"))}


def test_adding_and_linking_a_modality_changes_no_existing_file(trained, isolated_env):
    trained.remove_modality("toycolor")
    before = _hashes(isolated_env["registry"])
    assert before, "the fixture registry must hold trained files"

    trained.add_modality("toycolor", latent_dim=9, epochs=3, recognizer_epochs=2)  # another latent size
    trained.link("toyaudio", "toycolor", pairing="index")

    after = _hashes(isolated_env["registry"])
    assert {k: after[k] for k in before} == before, "an existing registry file changed"
    assert set(after) - set(before) == {p for p in after if "toycolor" in str(p)}


def test_a_new_modality_is_reachable_from_every_other_through_one_associator(trained):
    trained.remove_modality("toycolor")
    trained.add_modality("toycolor", latent_dim=9, epochs=3, recognizer_epochs=2)
    trained.link("toyaudio", "toycolor", pairing="index")
    for other in ("toyimg", "toyaudio"):
        assert trained.route(other, "toycolor")[-1] == "toycolor"
        assert trained.route("toycolor", other)[0] == "toycolor"
    assert trained.route("toyimg", "toycolor") == ["toyimg", "toyaudio", "toycolor"]
    result = trained.evaluate("toyimg", "toycolor")
    assert result["path"] == ["toyimg", "toyaudio", "toycolor"] and result["n"] > 0


def test_latent_sizes_may_differ_across_an_associator(trained):
    trained.remove_modality("toycolor")
    trained.add_modality("toycolor", latent_dim=9, epochs=3, recognizer_epochs=2)
    trained.link("toyaudio", "toycolor", pairing="index")
    a = trained.associator("toyaudio", "toycolor")
    assert (a.config.source_dim, a.config.target_dim) == (trained.node("toyaudio").vae.latent_dim, 9)
    x = trained.features(trained.node("toyaudio").modality, "test").x[:3]
    out = trained.translate("toyaudio", "toycolor", x)
    assert out.shape == (3, 1, *trained.node("toycolor").modality.input_shape)
    assert torch.isfinite(out).all()
