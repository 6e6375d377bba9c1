"""``modgraph card``: a registry's README written from its headers, whose commands retrain the same graph."""

from __future__ import annotations

import re
import shlex

import networkx as nx
import pytest
from click.testing import CliRunner

from modgraph.storage.card import link_command, mermaid, node_command
from modgraph.app.cli import main
from modgraph.storage.registry import Registry

pytestmark = pytest.mark.usefixtures("toy_installed")


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_card_is_written_from_headers_alone(trained, isolated_env, tmp_path, monkeypatch):
    def no_tensors(*args, **kwargs):
        raise AssertionError("the card must not load tensors")

    monkeypatch.setattr(Registry, "load_tensors", no_tensors)
    out = tmp_path / "README.md"
    assert run("card", "-o", str(out)).output.strip() == f"Wrote {out}"
    card = out.read_text()
    assert card.startswith("---\nlibrary_name: modgraph\n")  # a model hub's metadata header comes first
    assert "\n---\n\n# modgraph registry: 3 modalities, 4 associators" in card
    assert "```mermaid\nflowchart LR" in card and re.search(r"toyimg -->\|\"\d+\.\d\d%\"\| toyaudio", card)
    for name in ("toyimg", "toyaudio", "toycolor"):
        assert f"### {name}" in card
    assert "- plugin: modgraph-toy 0.0.1 (modgraph 0.1.0)" in card
    assert "- options: `{\"copies\": 0}`" in card
    assert re.search(r"\| toyaudio → toycolor \| index \| 1\.0 \| \d+\.\d\d% \(n=18\) \|", card)
    # The licence as the plugin states it; a plugin that states none is said to.
    assert "| toyimg | Toy bars | CC0 1.0 | https://example.org/toy-bars |" in card
    assert "| toyaudio | not stated by modgraph-toy | not stated |" in card
    assert run("card").output == card  # without -o it prints the same card


def test_card_names_a_plugin_that_is_not_installed(trained, monkeypatch):
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "nothing-installed")
    card = run("card").output
    # The dataset as the node's header recorded it at training; a node that records none and whose plugin
    # is missing is said to be so.
    assert "| toyimg | Toy bars | CC0 1.0 | https://example.org/toy-bars |" in card
    assert "| toyaudio | plugin modgraph-toy not installed here | not stated |" in card
    assert "--option copies=0" in card  # without the plugin's defaults, every stored option is written out


def test_card_header_is_a_hugging_face_model_card(trained):
    from huggingface_hub import ModelCard

    card = ModelCard(run("card").output)
    data = card.data.to_dict()
    assert data["library_name"] == "modgraph" and data["license"] == "other"
    assert data["datasets"] == ["Toy bars"] and data["metrics"] == ["accuracy"]
    assert {"modgraph", "toyimg", "toyaudio", "toycolor"} <= set(data["tags"])
    assert card.text.lstrip().startswith("# modgraph registry: 3 modalities")


def _commands(card: str) -> list[list[str]]:
    block = card.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[1:] for line in block.splitlines()]


def _settings(meta: dict) -> dict:
    """What a retraining must reproduce: everything but timings, history, paths and identities."""
    skip = {"created", "source_node_created", "target_node_created", "metrics"}
    out = {k: v for k, v in meta.items() if k not in skip}
    out["training"] = {k: v for k, v in meta["training"].items() if k not in ("history", "epoch_kept")}
    out["data"] = {k: v for k, v in (meta.get("data") or {}).items() if k != "root"}
    return out


def test_card_commands_retrain_the_same_graph(trained, isolated_env, tmp_path):
    commands = _commands(run("card").output)
    assert [c[0] for c in commands] == ["add-modality"] * 3 + ["link"] * 2
    assert commands[3][:3] == ["link", "toyimg", "toyaudio"]  # the order the pair was linked in
    again = tmp_path / "again"
    for command in commands:
        run(*command, "--registry", str(again))
    source, copy = Registry(isolated_env["registry"]).graph(), Registry(again).graph()
    assert sorted(source.nodes) == sorted(copy.nodes) and sorted(source.edges) == sorted(copy.edges)
    for name in source.nodes:
        assert _settings(copy.nodes[name]) == _settings(source.nodes[name]), name
    for edge in source.edges:
        assert _settings(copy.edges[edge]) == _settings(source.edges[edge]), edge


def test_link_command_keeps_what_the_directions_share():
    forward = {"pairing": "concept", "paired_fraction": 0.05,
               "training": {"epochs": 5, "candidates": 8, "seed": 3, "exclude": {"speaker": ["jackson", "lucas"]},
                            "pseudo_label_confidence": None, "select": "loss"}}
    backward = {"pairing": "concept", "paired_fraction": 0.05,
                "training": {"epochs": 5, "candidates": 1, "seed": 3, "select": "loss"}}
    line = link_command("fsdd", "mnist", forward, backward)
    # candidates differ by direction: each took its target's default, so none is given.
    assert line == ("modgraph link fsdd mnist --paired-fraction 0.05 --epochs 5 --seed 3 --select loss "
                    "--exclude speaker=jackson,lucas")
    assert link_command("fsdd", "mnist", forward, None).endswith("--seed 3 --candidates 8 --select loss "
                                                                  "--exclude speaker=jackson,lucas --one-way")


def test_node_command_quotes_options_and_leaves_defaults_out():
    meta = {"config": {"vae": {"latent_dim": 32}},
            "training": {"epochs": 3, "seed": 1, "precision": "bf16", "processes": 2},
            "options": {"variants": ["word", "digit"], "typo_rate": 0.2, "label": "a b", "flag": "true"}}
    line = node_command("text", meta, {"typo_rate": 0.2})
    assert line == ("modgraph add-modality text --latent-dim 32 --epochs 3 --seed 1 --option 'flag=\"true\"' "
                    "--option 'label=a b' --option 'variants=[\"word\", \"digit\"]' --precision bf16 --nproc 2")


def test_mermaid_dashes_stale_edges():
    g = nx.DiGraph()
    g.add_node("a", config={"vae": {"latent_dim": 4}})
    g.add_node("b", config={"vae": {"latent_dim": 8}})
    g.add_edge("a", "b", metrics={"accuracy": 0.5}, stale=True)
    g.add_edge("b", "a", metrics={"accuracy": 0.25}, stale=False)
    text = mermaid(g)
    assert 'a -.->|"50.00% stale"| b' in text and 'b -->|"25.00%"| a' in text
