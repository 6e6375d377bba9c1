"""``modgraph add-modality mnist --nproc 2``: a real torchrun launch of two gloo processes on tiny IDX files."""

from __future__ import annotations

import os
import subprocess
import sys

from modgraph.api import ModGraph


def test_add_modality_with_nproc_2_trains_under_torchrun_and_writes_once(data_root, tmp_path):
    root, _ = data_root
    env = dict(os.environ, MODGRAPH_DATA=str(root), MODGRAPH_REGISTRY=str(tmp_path / "registry"),
               MODGRAPH_CACHE=str(tmp_path / "cache"), MODGRAPH_LOAD_PLUGINS="modgraph-vision",
               MODGRAPH_NUM_THREADS="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "modgraph", "add-modality", "mnist", "--epochs", "1",
                             "--recognizer-epochs", "1", "--batch-size", "8", "--device", "cpu", "--nproc", "2"],
                            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Wrote ") == 1, result.stdout  # rank 0 reports; rank 1 stays quiet
    assert "VAE reconstruction accuracy" in result.stdout

    mg = ModGraph(registry=tmp_path / "registry", data_root=root, cache_dir=tmp_path / "cache", device="cpu",
                  progress=False)
    node = mg.node("mnist")
    assert node.meta["training"]["processes"] == 2
    assert next(node.vae.parameters()).device.type == "cpu"
