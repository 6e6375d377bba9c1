"""Docs that can't drift: every hook has a section in docs/plugin-hooks.md with its exact signature.

The section's example plugin is run, so the example cannot rot either.
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest
import torch

from modgraph import hookspecs
from modgraph.errors import DataNotFoundError
from modgraph.learning.models import VAE, Recognizer
from modgraph.plugins import PluginHost

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugin-hooks.md"


class _Source:
    """An annotation shown as written in the source (hookspecs uses postponed annotations)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def hooks() -> dict[str, object]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "modgraph_spec")}


def rendered_signature(fn) -> str:
    """``name(param: Type, ...) -> Return`` exactly as the hookspec declares it."""
    sig = inspect.signature(fn)

    def plain(annotation):
        return _Source(annotation) if isinstance(annotation, str) else annotation

    sig = sig.replace(parameters=[p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()],
                      return_annotation=plain(sig.return_annotation))
    return f"{fn.__name__}{sig}"


def sections() -> dict[str, str]:
    """Level-2 sections of the hooks page, by heading (backticks stripped)."""
    parts = re.split(r"^## +(.+?) *$", DOCS.read_text(), flags=re.MULTILINE)
    return {heading.strip("`"): body for heading, body in zip(parts[1::2], parts[2::2])}


def test_there_are_hooks_to_document():
    assert "register_modalities" in hooks()
    assert rendered_signature(hooks()["register_modalities"]) == (
        "register_modalities(register: Callable[[object], None]) -> None")


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_a_section_with_its_exact_signature(name):
    found = sections()
    assert name in found, f"docs/plugin-hooks.md has no '## {name}' section"
    assert rendered_signature(hooks()[name]) in found[name], (
        f"the '## {name}' section of docs/plugin-hooks.md does not show the signature "
        f"{rendered_signature(hooks()[name])}")


def test_every_hook_section_is_a_real_hook():
    documented = {heading for heading in sections() if re.fullmatch(r"[a-z_]+", heading)}
    assert documented <= set(hooks()), f"documented hooks that do not exist: {documented - set(hooks())}"


def test_every_hook_has_a_docstring():
    for name, fn in hooks().items():
        assert inspect.getdoc(fn), f"hook {name} has no docstring"


def _example_sources(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", sections()[name], flags=re.DOTALL)


def test_the_register_modalities_example_runs(tmp_path):
    [source] = [s for s in _example_sources("register_modalities") if "@hookimpl" in s]
    plugin = types.ModuleType("docs_example_plugin")
    exec(compile(source, str(DOCS), "exec"), plugin.__dict__)
    host = PluginHost(load_entry_points=False)
    host.add_plugin(plugin, name="example", distribution="modgraph-example", version="1.0")
    [name] = host.modalities()
    modality = host.get(name)
    assert modality.distribution == "modgraph-example"

    vae = VAE(modality.vae_config(modality.default_latent_dim))
    recognizer = Recognizer(modality.recognizer_config())
    x = torch.rand(2, *modality.input_shape)
    logits, mu, _ = vae(x)
    assert logits.shape == x.shape and mu.shape == (2, modality.default_latent_dim)
    assert recognizer(x).shape == (2, len(modality.classes))
    with pytest.raises(DataNotFoundError, match="--download"):
        modality.load_features(tmp_path, "train")


def test_the_plugin_contract_tables_are_generated_from_the_code():
    """docs/plugin-hooks.md's member and field tables are what modgraph.app.plugin_reference makes of the code now."""
    from modgraph.app.plugin_reference import rendered

    text = DOCS.read_text()
    assert rendered(text) == text, \
        "docs/plugin-hooks.md's plugin contract tables differ from the code: run python -m modgraph.app.plugin_reference"


def test_every_member_of_the_plugin_contract_says_what_it_is():
    import importlib

    from modgraph.app.plugin_reference import TABLES, members

    for module, cls_name in TABLES.values():
        cls = getattr(importlib.import_module(module), cls_name)
        silent = [m.name for m in members(cls) if not m.summary]
        assert not silent, f"{cls_name} members with no docstring or comment above them: {silent}"


def test_the_member_table_lists_what_the_trial_found_missing():
    body = sections()["The plugin contract"]
    for member in ("needs_data", "dataset", "feature_version", "target_exclude", "augment_batch", "read_text",
                   "for_data", "read_files", "`epochs`", "`kl_weight`", "`licence`"):
        assert member in body, f"{member} is missing from docs/plugin-hooks.md's plugin contract"


def test_no_doc_or_docstring_cites_a_file_outside_the_repository():
    """Users have the repository, not the notes it was written from (issue 32: 'CONVENTIONS rule 16')."""
    root = DOCS.parent.parent
    paths = [*root.glob("docs/**/*.md"), root / "README.md", *root.glob("modgraph/**/*.py"),
             *root.glob("modgraph/app/plugin_templates/*.tmpl"), *root.glob("plugins/*/README.md"),
             *root.glob("plugins/*/modgraph_*/*.py")]
    cited = [str(p.relative_to(root)) for p in paths if re.search(r"CONVENTIONS|/work/|\.\./shared/", p.read_text())]
    assert not cited, f"these cite a file users do not have: {cited}"
