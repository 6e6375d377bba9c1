"""``modgraph plan``: stages of independent jobs from a graph spec, up-to-date ones left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modgraph.app.cli import main
from modgraph.errors import ConfigError
from modgraph.runtime.plan import GraphSpec, make_plan, read_spec

TESTS = Path(__file__).resolve().parent

# The graph the ``trained`` fixture holds, with every setting left at its default.
SPEC = """
[modalities.toyimg]
[modalities.toyaudio]
[modalities.toycolor]

[[links]]
source = "toyimg"
target = "toyaudio"

[[links]]
source = "toyaudio"
target = "toycolor"
pairing = "index"
"""


def write(tmp_path, text: str, name: str = "graph.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ids(jobs) -> list[str]:
    return [job["id"] for job in jobs]


def test_an_empty_registry_plans_every_node_then_every_link(mg, tmp_path, isolated_env):
    plan = make_plan(mg, read_spec(write(tmp_path, SPEC)))
    first, second = plan["stages"]
    assert ids(first["jobs"]) == ["node:toyimg", "node:toyaudio", "node:toycolor"]
    assert ids(second["jobs"]) == ["link:toyimg--toyaudio", "link:toyaudio--toycolor"]
    assert second["jobs"][1]["needs"] == ["node:toyaudio", "node:toycolor"]
    assert plan["up_to_date"] == []
    registry = str(isolated_env["registry"].resolve())
    assert first["jobs"][0]["argv"] == ["modgraph", "add-modality", "toyimg", "--registry", registry]
    assert second["jobs"][1]["argv"][:6] == ["modgraph", "link", "toyaudio", "toycolor", "--pairing", "index"]


def test_settings_options_and_extra_arguments_become_flags(mg, tmp_path):
    spec = GraphSpec.model_validate({
        "args": ["--device", "cpu"],
        "modalities": {"toyimg": {"epochs": 3, "lr": 0.005, "seed": 2, "options": {"copies": 1},
                                  "args": ["--nproc", "2"]},
                       "toyaudio": {"exclude": {"speaker": ["ann", "bob"]}}},
        "links": [{"source": "toyaudio", "target": "toyimg", "paired_fraction": 0.5, "one_way": True}]})
    plan = make_plan(mg, spec, registry_arg="reg", data_root_arg="data")
    img, audio = plan["stages"][0]["jobs"]
    assert img["command"] == (f"modgraph add-modality toyimg --epochs 3 --lr 0.005 --seed 2 --option copies=1 "
                              f"--registry {Path('reg').resolve()} --data-root {Path('data').resolve()} "
                              f"--device cpu --nproc 2")
    assert "--exclude speaker=ann,bob" in audio["command"]
    [link] = plan["stages"][1]["jobs"]
    assert "--paired-fraction 0.5 --one-way" in link["command"]


def test_what_the_registry_holds_up_to_date_is_left_out(trained, tmp_path):
    plan = make_plan(trained, read_spec(write(tmp_path, SPEC)))
    assert [stage["jobs"] for stage in plan["stages"]] == [[], []]
    assert len(plan["up_to_date"]) == 5
    # Another budget for toyimg: it is retrained, and its link after it; toyaudio--toycolor stays.
    changed = SPEC.replace("[modalities.toyimg]", "[modalities.toyimg]\nepochs = 7")
    plan = make_plan(trained, read_spec(write(tmp_path, changed)))
    [node] = plan["stages"][0]["jobs"]
    assert node["id"] == "node:toyimg" and node["reasons"] == ["epochs 20 recorded, 7 wanted"]
    [link] = plan["stages"][1]["jobs"]
    assert link["id"] == "link:toyimg--toyaudio" and link["needs"] == ["node:toyimg"]
    assert "link:toyaudio--toycolor" in ids(plan["up_to_date"])
    # A link whose recorded pairing differs, and one left stale by a retrained node.
    changed = SPEC.replace('pairing = "index"', 'pairing = "index"\npaired_fraction = 0.5')
    [link] = make_plan(trained, read_spec(write(tmp_path, changed)))["stages"][1]["jobs"]
    assert link["reasons"] == ["toyaudio -> toycolor: paired_fraction 1.0 recorded, 0.5 wanted",
                               "toycolor -> toyaudio: paired_fraction 1.0 recorded, 0.5 wanted"]
    trained.add_modality("toycolor")
    plan = make_plan(trained, read_spec(write(tmp_path, SPEC)))
    assert plan["stages"][0]["jobs"] == []
    [link] = plan["stages"][1]["jobs"]
    assert link["id"] == "link:toyaudio--toycolor" and "stale" in link["reasons"][0]


@pytest.mark.parametrize("text, words", [
    ("[modalities.toyimg]\nepoch = 3\n", "modalities.toyimg.epoch: not a known setting"),
    ("[[links]]\nsource = 'toyimg'\ntarget = 'toyimg'\n", "not 'toyimg' with itself"),
    ("[[links]]\nsource = 'toyimg'\ntarget = 'toyaudio'\n", "needs modality 'toyimg'"),
    ("[modalities.a]\n[modalities.b]\n[[links]]\nsource = 'a'\ntarget = 'b'\n[[links]]\nsource = 'b'\n"
     "target = 'a'\none_way = true\n", "links 1 and 2 both train b -> a"),
    ("[modalities.toyimg\n", "is not valid toml"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "deeper than 64 levels"),
    (".".join(["a"] * 3000) + " = 1\n", "deeper than 64 levels"),
])
def test_a_bad_spec_is_one_clear_error(mg, tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        make_plan(mg, read_spec(write(tmp_path, text)))
    assert words in str(info.value)


def test_cli_prints_json_and_shell_lines(toy_installed, tmp_path, isolated_env):
    spec = write(tmp_path, json.dumps({"modalities": {"toycolor": {"epochs": 1}}}), "graph.json")
    result = CliRunner().invoke(main, ["plan", str(spec)])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["stages"][0]["jobs"][0]["argv"][:5] == ["modgraph", "add-modality", "toycolor", "--epochs", "1"]
    result = CliRunner().invoke(main, ["plan", str(spec), "--format", "commands"])
    lines = result.output.splitlines()
    assert lines[0].startswith("# stage 1: 1 add-modality job(s)")
    assert lines[1].startswith("modgraph add-modality toycolor --epochs 1 --registry ")
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot read the graph spec")


def test_jobs_of_a_stage_run_concurrently_into_one_registry(install_distribution, toy_data, tmp_path, monkeypatch,
                                                           isolated_env):
    """Stage 1's jobs run as parallel processes: both nodes land, and the plan moves on to the links."""
    import toyplugin

    site = install_distribution(toyplugin.DISTRIBUTION, toyplugin.__version__, {"toy": "toyplugin"})
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", toyplugin.DISTRIBUTION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    spec = write(tmp_path, """
[modalities.toyimg]
epochs = 1
recognizer_epochs = 1
[modalities.toyaudio]
epochs = 1
recognizer_epochs = 1

[[links]]
source = "toyimg"
target = "toyaudio"
""")

    def plan():
        result = CliRunner().invoke(main, ["plan", str(spec)])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    first = plan()["stages"][0]["jobs"]
    assert len(first) == 2
    running = [subprocess.Popen([sys.executable, "-m", "modgraph", *job["argv"][1:]], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for job in first]
    for process in running:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    registry = isolated_env["registry"]
    assert sorted(p.name for p in (registry / "nodes").iterdir()) == ["toyaudio.safetensors", "toyimg.safetensors"]
    after = plan()
    assert after["stages"][0]["jobs"] == [] and ids(after["up_to_date"]) == ["node:toyimg", "node:toyaudio"]
    [link] = after["stages"][1]["jobs"]
    assert link["needs"] == [] and link["reasons"] == ["no associator toyimg -> toyaudio",
                                                       "no associator toyaudio -> toyimg"]
