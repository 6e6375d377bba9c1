"""``modgraph history``: a node's or an edge's stored training curves as a plot, CSV or JSON."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from modgraph.app.cli import main

pytestmark = pytest.mark.usefixtures("toy_installed")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_csv_and_json_give_every_stored_epoch(trained):
    stored = trained.registry.edge_record("toyimg", "toyaudio").training["history"]
    result = run("history", "toyimg->toyaudio", "--csv")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and lines[0] == "epoch,train_loss,val_loss,val_accuracy"
    assert len(lines) == 1 + len(stored) and float(lines[1].split(",")[1]) == pytest.approx(stored[0]["train_loss"])
    assert json.loads(run("history", "toyimg", "--json").output) == \
        trained.registry.node_record("toyimg").training["history"]


def test_the_plot_is_a_png_named_after_what_it_shows(trained, tmp_path):
    result = run("history", "toyimg--toyaudio")
    assert result.exit_code == 0 and "toyimg--toyaudio-history.png" in result.output
    with Image.open(tmp_path / "toyimg--toyaudio-history.png") as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
    result = run("history", "toyimg", "-o", str(tmp_path / "curves.png"))
    assert result.exit_code == 0 and (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("name, words", [("nothing", "not in registry"), ("toyimg->toycolor", "no associator"),
                                         ("../x", "not a modality name")])
def test_unknown_or_bad_names_are_one_line(trained, name, words):
    result = run("history", name)
    assert result.exit_code == 1 and words in result.output and len(result.output.strip().splitlines()) == 1
