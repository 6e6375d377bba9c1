"""Settings are defined once: the CLI, the API, plan's spec and argv, and the stored header agree."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from modgraph.app.cli import add_modality_cmd, eval_cmd, link_cmd, main, read_cmd, translate_cmd
from modgraph.app.cli_options import settings_from_cli
from modgraph.errors import ConfigError
from modgraph.runtime.plan import GraphSpec, link_argv, link_changes, node_argv, node_changes
from modgraph.settings import (DEFAULT_ANCHOR, MAX_ANCHOR, EvalSettings, LinkSettings, LinkSpec, NodeSettings, NodeSpec,
                               ReadSettings, TranslateSettings)
from modgraph.storage.card import reproduce_commands

# Options of the commands that are not training settings: where to run, what to read, how many processes.
RUN_OPTIONS = {"name", "source", "target", "download", "rebuild_features", "registry", "data_root", "device",
               "precision", "nproc", "nnodes", "node_rank", "rdzv_endpoint", "options_file"}

EVERY_NODE_SETTING = dict(latent_dim=7, epochs=2, recognizer_epochs=3, batch_size=16, lr=0.002, kl_weight=0.5,
                          vae_target="original", seed=5, options={"copies": 1}, exclude={"speaker": ["a", "b"]})
EVERY_LINK_SETTING = dict(pairing="index", paired_fraction=0.5, epochs=2, batch_size=16, lr=0.002, kl_weight=0.5,
                          seed=5, candidates=2, target_confidence=0.3, source_noise=0.5, pseudo_label_confidence=0.7,
                          select="loss", exclude={"speaker": ["a"]}, one_way=True)


@pytest.mark.parametrize("command, model", [(add_modality_cmd, NodeSettings), (link_cmd, LinkSettings)])
def test_each_setting_is_one_cli_option_and_nothing_else(command, model):
    options = {p.name for p in command.params} - RUN_OPTIONS
    assert options == set(model.model_fields)


@pytest.mark.parametrize("command, model", [(translate_cmd, TranslateSettings), (eval_cmd, EvalSettings),
                                            (read_cmd, ReadSettings)])
def test_translate_eval_and_read_options_are_their_settings_fields(command, model):
    shown = {"inputs", "output", "as_json", "quiet"}  # what to read and write, and how to print it
    assert {p.name for p in command.params} - RUN_OPTIONS - shown == set(model.model_fields)


def test_the_anchor_bound_is_written_once():
    assert TranslateSettings.model_fields["anchor"].default == DEFAULT_ANCHOR
    for model in (TranslateSettings, EvalSettings):
        with pytest.raises(ConfigError, match="anchor: Input should be less than or equal to"):
            model.parse({"anchor": MAX_ANCHOR + 1})


def test_the_test_data_set_every_field():
    assert set(EVERY_NODE_SETTING) == set(NodeSettings.model_fields)
    assert set(EVERY_LINK_SETTING) == set(LinkSettings.model_fields)


@pytest.mark.parametrize("command, model, values, argv", [
    (add_modality_cmd, NodeSettings, EVERY_NODE_SETTING, lambda s: node_argv("toyimg", NodeSpec(**s))[3:]),
    (link_cmd, LinkSettings, EVERY_LINK_SETTING, lambda s: link_argv(LinkSpec(source="a", target="b", **s))[4:]),
])
def test_plan_argv_parses_back_to_the_same_settings(command, model, values, argv):
    args = argv(values)
    positional = ["toyimg"] if command is add_modality_cmd else ["a", "b"]
    ctx = command.make_context(command.name, [*positional, *args])
    assert settings_from_cli(model, dict(ctx.params)) == model(**values)
    # Defaults leave nothing on the command line.
    assert argv({}) == []


def test_plan_spec_fields_are_the_settings_fields():
    assert set(NodeSpec.model_fields) == set(NodeSettings.model_fields) | {"args", "resources"}
    assert set(LinkSpec.model_fields) == set(LinkSettings.model_fields) | {"source", "target", "args", "resources"}


def test_api_keywords_are_the_settings_fields(mg):
    with pytest.raises(ConfigError, match="latent_dims: not a known setting"):
        mg.add_modality("toyimg", latent_dims=3)
    with pytest.raises(ConfigError, match="pairings: not a known setting"):
        mg.link("toyimg", "toyaudio", pairings="index")
    with pytest.raises(ConfigError, match="not both"):
        mg.add_modality("toyimg", NodeSettings(), epochs=1)


def test_the_stored_header_is_what_plan_compares(make_graph, toy_data):
    mg = make_graph()
    node = dict(epochs=1, recognizer_epochs=1, latent_dim=6, batch_size=32, lr=0.002, kl_weight=0.5, seed=3,
                options={"copies": 1})
    mg.add_modality("toyimg", **node)
    mg.add_modality("toyaudio", epochs=1, recognizer_epochs=1)
    assert node_changes(mg, "toyimg", NodeSpec(**node)) == []
    assert node_changes(mg, "toyimg", NodeSpec(**{**node, "kl_weight": 0.25})) == \
        ["kl_weight 0.5 recorded, 0.25 wanted"]
    link = dict(epochs=1, batch_size=32, lr=0.002, kl_weight=0.5, seed=2, paired_fraction=0.5)
    mg.link("toyimg", "toyaudio", **link)
    spec = LinkSpec(source="toyimg", target="toyaudio", **link)
    assert link_changes(mg, spec, mg.graph(), set()) == []
    changed = LinkSpec(source="toyimg", target="toyaudio", **{**link, "seed": 4})
    assert link_changes(mg, changed, mg.graph(), set()) == ["toyimg -> toyaudio: seed 2 recorded, 4 wanted",
                                                            "toyaudio -> toyimg: seed 2 recorded, 4 wanted"]
    record = mg.registry.node_record("toyimg")
    resolved = NodeSettings(**node).resolve(mg.modality("toyimg", node["options"]))
    assert {k: record.training[k] for k in resolved.training_header()} == resolved.training_header()
    assert record.latent_dim == 6 and record.options == {"copies": 1}
    # The edge header is the resolved link settings, numbers as numbers (nothing left as None).
    edge = mg.registry.edge_record("toyimg", "toyaudio")
    resolved_link = LinkSettings(**link).resolve(mg.modality("toyimg"), mg.modality("toyaudio"))
    assert {k: edge.training[k] for k in resolved_link.training_header()} == resolved_link.training_header()
    assert mg.graph().edges["toyimg", "toyaudio"]["paired_fraction"] == 0.5
    assert isinstance(edge.training["pseudo_label_confidence"], float)
    # The card's commands give back the settings that trained the graph.
    _, node_line, link_line = reproduce_commands(mg.graph(), {"toyimg": {}, "toyaudio": {}})
    node_args = shlex.split(node_line)[2:]
    ctx = add_modality_cmd.make_context("add-modality", node_args)
    assert settings_from_cli(NodeSettings, dict(ctx.params)).resolve(mg.modality("toyimg", node["options"])).model_dump() \
        == resolved.model_dump(), node_line
    ctx = link_cmd.make_context("link", shlex.split(link_line)[2:])
    from_card = settings_from_cli(LinkSettings, dict(ctx.params))
    for a, b in (("toyimg", "toyaudio"), ("toyaudio", "toyimg")):
        assert from_card.resolve(mg.modality(a), mg.modality(b)) == \
            LinkSettings(**link).resolve(mg.modality(a), mg.modality(b)), link_line


@pytest.mark.parametrize("args, fragment", [
    (["--latent-dim", "5000"], "latent_dim: Input should be less than or equal to 4096"),
    (["--seed", "99999999999999999999999"], "seed: Input should be less than or equal to"),
    (["--batch-size", "1000000000"], "batch_size: Input should be less than or equal to"),
    (["--option", "foo=1"], "foo: not a known setting"),
])
@pytest.mark.usefixtures("toy_installed")
def test_bad_settings_are_one_line_before_any_data_loads(isolated_env, args, fragment):
    # No data root exists: a command that got as far as loading data would fail differently.
    result = CliRunner().invoke(main, ["add-modality", "toyimg", *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_a_graph_spec_refuses_an_unknown_setting_naming_it():
    with pytest.raises(Exception, match="epoch"):
        GraphSpec.model_validate({"modalities": {"toyimg": {"epoch": 3}}})
