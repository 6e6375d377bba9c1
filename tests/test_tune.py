"""``modgraph tune``: tiny Optuna studies on the toy nodes and a toy link (skipped where Optuna is not installed)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from modgraph.app.cli import main
from modgraph.errors import ConfigError
from modgraph.settings import NodeSettings, SearchRange, TuneSettings

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("toy_installed")
FAST = ["--trials", "2", "--sampler-seed", "0", "--epochs", "4"]  # epochs fixed: short trials


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tune(mg, names, base, settings, **kwargs):
    from modgraph.learning.tuning import tune

    return tune(mg, names, base, settings, **kwargs)


def test_tune_writes_a_spec_that_plan_and_add_modality_read_and_leaves_the_registry_alone(toy_data, isolated_env,
                                                                                          tmp_path):
    registry = isolated_env["registry"]
    result = run("tune", "toycolor", *FAST)
    assert "trial    1" in result.output or "trial   1" in result.output
    assert "Wrote toycolor-tuned.toml" in result.output
    assert not registry.exists()  # the study lives beside the registry, never in it
    assert (tmp_path / "registry-tune" / "toycolor.db").is_file()
    spec = tmp_path / "toycolor-tuned.toml"
    text = spec.read_text()
    assert "[modalities.toycolor]" in text and "epochs = 4" in text
    job = json.loads(run("plan", str(spec)).output)["stages"][0]["jobs"][0]
    assert job["modality"] == "toycolor" and "--kl-weight" in job["argv"] and "--lr" in job["argv"]
    run("add-modality", "toycolor", "--options-file", str(spec), "--recognizer-epochs", "2")
    from modgraph.storage.registry import Registry

    training = Registry(registry).node_record("toycolor").training
    lr = float(text.split("lr = ")[1].split()[0])
    assert training["epochs"] == 4 and training["recognizer_epochs"] == 2 and training["lr"] == pytest.approx(lr)


def test_apply_on_the_command_line_trains_the_node(toy_data, isolated_env):
    result = run("tune", "toycolor", "--trials", "1", "--epochs", "3", "--apply")
    assert "Wrote " in result.output and "VAE: test accuracy" in result.output
    assert (isolated_env["registry"] / "nodes").is_dir()


def test_apply_trains_the_best_settings_and_the_node_scores_what_the_trial_did(toy_data, isolated_env, make_graph):
    mg = make_graph()
    report = tune(mg, ["toycolor"], NodeSettings(epochs=4), TuneSettings(trials=2, sampler_seed=0, apply=True))
    metrics = mg.registry.node_record("toycolor").metrics
    assert metrics["val_reconstruction_accuracy"] == pytest.approx(report["best"]["value"])
    assert mg.registry.node_record("toycolor").training["lr"] == pytest.approx(report["settings"]["lr"])


def test_a_hopeless_configuration_is_pruned(toy_data, make_graph):
    report = tune(make_graph(), ["toycolor"], NodeSettings(epochs=8), TuneSettings(trials=2, prune_after=1),
                  space={"lr": SearchRange(low=1e-7, high=1e-2, log=True)}, first=[{"lr": 1e-7}])
    states = {t["number"]: t["state"] for t in report["trials"]}
    assert states == {0: "complete", 1: "pruned"}  # trial 0: the modality's defaults
    assert report["trials"][0]["note"] == "the modality's defaults"
    assert report["best"]["params"] == {"lr": 0.01}


def test_a_shared_storage_url_resumes_the_study_and_refuses_other_settings(toy_data, make_graph, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = TuneSettings(trials=1, storage=url, study="colours", sampler_seed=0, output=str(tmp_path / "a.toml"))
    space = {"kl_weight": SearchRange(low=0.1, high=1.0, log=True)}
    tune(make_graph(), ["toycolor"], NodeSettings(epochs=3), settings, space=space)
    again = tune(make_graph(), ["toycolor"], NodeSettings(epochs=3), settings.model_copy(update={"sampler_seed": 1}),
                 space=space)
    assert [t["number"] for t in again["trials"]] == [0, 1]
    assert len(optuna.load_study(study_name="colours", storage=url).trials) == 2
    with pytest.raises(ConfigError, match="other fixed settings"):
        tune(make_graph(), ["toycolor"], NodeSettings(epochs=2), settings, space=space)


def test_tune_a_link_trains_in_a_temporary_registry(trained, isolated_env, tmp_path):
    before = snapshot(isolated_env["registry"])
    result = run("tune", "toyimg", "toyaudio", "--trials", "1", "--epochs", "3", "--sampler-seed", "0")
    assert "validation translation accuracy" in result.output
    assert snapshot(isolated_env["registry"]) == before
    spec = tmp_path / "toyimg--toyaudio-tuned.toml"
    job = json.loads(run("plan", str(spec)).output)["stages"][1]["jobs"][0]
    assert (job["source"], job["target"]) == ("toyimg", "toyaudio") and "--epochs" in job["argv"]


def test_options_of_the_other_command_are_refused(toy_data):
    result = CliRunner().invoke(main, ["tune", "toycolor", "--pairing", "index"])
    assert result.exit_code == 1 and "tune NAME does not take --pairing" in result.output
    result = CliRunner().invoke(main, ["tune", "toyimg", "toyaudio", "--latent-dim", "3"])
    assert result.exit_code == 1 and "tune A B does not take --latent-dim" in result.output


def test_a_search_space_names_only_settings_that_can_be_searched():
    from pydantic import ValidationError

    from modgraph.modality import TrainingDefaults

    with pytest.raises(ValidationError, match="'seed' cannot be searched"):
        TrainingDefaults(search_space={"seed": SearchRange(low=0, high=3)})
    with pytest.raises(ValidationError, match="low <= high"):
        SearchRange(low=2, high=1)
    assert set(TrainingDefaults().search_space) == {"latent_dim", "kl_weight", "lr", "batch_size", "epochs"}


def test_an_output_that_is_not_a_regular_file_is_refused_before_any_trial(toy_data, tmp_path):
    (tmp_path / "folder.toml").mkdir()
    result = CliRunner().invoke(main, ["tune", "toycolor", "--trials", "1", "--output", str(tmp_path / "folder.toml")])
    assert result.exit_code == 1 and "not a regular file" in result.output
    assert not (tmp_path / "registry-tune").exists()


def test_a_budget_in_minutes_stops_starting_trials(toy_data, make_graph):
    report = tune(make_graph(), ["toycolor"], NodeSettings(epochs=2), TuneSettings(minutes=0.001, sampler_seed=0))
    assert len(report["trials"]) == 1  # the budget was spent when the first trial ended
