"""benchmarks/render_results.py: docs/results.md assembled from the benchmarks' fragments."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "render_results.py"
spec = importlib.util.spec_from_file_location("render_results", SCRIPT)
render_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_results)


def test_sections_in_the_known_order_then_alphabetically(tmp_path):
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    for name in ("zeta", "ddp", "alpha", "core_bars", "paper_tables"):
        (results / f"{name}.md").write_text(f"## Section {name}\n\nbody of {name}\n")
    (results / "core_bars.json").write_text("{}")  # not a fragment
    text = render_results.write(results, tmp_path / "docs" / "results.md").read_text()
    order = [text.index(f"\n## Section {n}") for n in ("paper_tables", "core_bars", "ddp", "alpha", "zeta")]
    assert order == sorted(order)
    assert text.startswith("# Results\n\nGenerated, do not edit by hand")
    assert "- [Section core_bars](#section-core_bars) (`python benchmarks/core_bars.py`" in text
    assert "(no script of that name" in text  # zeta has no benchmark script


def test_links_rebased_and_untitled_fragment_titled(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "plot.png").write_bytes(b"png")
    (results / "cost.md").write_text("| a |\n| --- |\n\n![plot](plot.png) [site](https://example.org) [top](#x)\n")
    text = render_results.assemble(results, tmp_path / "results.md")
    assert "## cost\n" in text
    assert "![plot](results/plot.png)" in text
    assert "[site](https://example.org)" in text and "[top](#x)" in text


def test_anchors_numbered_like_github():
    seen = {}
    assert render_results.anchor("Issue 2's bars, one seed (0)", seen) == "issue-2s-bars-one-seed-0"
    assert render_results.anchor("Issue 2's bars, one seed (0)", seen) == "issue-2s-bars-one-seed-0-1"
