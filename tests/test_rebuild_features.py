"""``add-modality --rebuild-features`` and ``forget_features``: one modality's cached features go, the others stay."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from modgraph.app.cli import main
from modgraph.errors import ConfigError
from modgraph.features.cache import forget_features


def _entries(cache, name):
    return sorted(p.name for p in cache.glob(f"{name}-*"))


def test_forget_features_deletes_one_modality_only(mg, toy_data, isolated_env):
    cache = isolated_env["cache"]
    for name in ("toyimg", "toycolor"):
        mg.features(mg.modality(name), "train")
        mg.features(mg.modality(name), "test")
    assert len(_entries(cache, "toycolor")) >= 2 and _entries(cache, "toyimg")
    kept = _entries(cache, "toyimg")
    gone = forget_features("toycolor", cache)
    assert gone and not _entries(cache, "toycolor")
    assert _entries(cache, "toyimg") == kept
    with pytest.raises(ConfigError, match="not a modality name"):
        forget_features("../toyimg", cache)


@pytest.mark.usefixtures("toy_installed")
def test_add_modality_rebuild_features_recomputes_the_cache(toy_data, isolated_env):
    quick = ["add-modality", "toycolor", "--epochs", "1", "--recognizer-epochs", "1"]
    assert CliRunner().invoke(main, quick).exit_code == 0
    manifests = sorted(isolated_env["cache"].glob("toycolor-*/manifest.json"))
    before = {p: p.stat().st_mtime_ns for p in manifests}
    (manifests[0].parent / "marker").write_text("left by the first build")
    result = CliRunner().invoke(main, [*quick, "--rebuild-features"])
    assert result.exit_code == 0, result.output
    assert not (manifests[0].parent / "marker").exists()  # the folder was deleted, then built again
    assert all(p.exists() and p.stat().st_mtime_ns >= before[p] for p in manifests)
