"""benchmarks/compare_registries.py: two registries are the same training only with every weight and figure equal."""

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_registries.py"
spec = importlib.util.spec_from_file_location("compare_registries", SCRIPT)
compare_registries = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_registries)


def write(path: Path, weight: float, metrics: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.full((3,), weight)}, str(path), metadata={"metrics": json.dumps(metrics)})


def test_equal_weights_and_figures_are_the_same_training_and_any_change_is_not(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    write(old / "nodes" / "a.safetensors", 1.0, {"accuracy": 0.99})
    write(old / "edges" / "a--b.safetensors", 2.0, {"accuracy": 0.97})
    shutil.copytree(old, new)
    write(new / "nodes" / "a.safetensors", 1.0, {"accuracy": 0.99, "val_accuracy": 0.98})  # a figure added
    lines, same = compare_registries.compare(old, new)
    assert same and "(new figures: val_accuracy)" in lines[1]
    write(new / "edges" / "a--b.safetensors", 2.0 + 1e-6, {"accuracy": 0.97})
    lines, same = compare_registries.compare(old, new)
    assert not same and "weights DIFFER" in lines[0]
    write(new / "edges" / "a--b.safetensors", 2.0, {"accuracy": 0.9701})
    lines, same = compare_registries.compare(old, new)
    assert not same and "accuracy 0.97 -> 0.9701" in lines[0]
    (new / "edges" / "a--b.safetensors").unlink()
    assert compare_registries.compare(old, new) == (["edges/a--b.safetensors: only in the old registry",
                                                     lines[1]], False)
