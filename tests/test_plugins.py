"""Plugin discovery: registration through the hook, entry points, duplicates, MODGRAPH_LOAD_PLUGINS."""

from __future__ import annotations

import types

import pytest
import toyplugin
from click.testing import CliRunner

from modgraph import hookimpl
from modgraph.app.cli import main
from modgraph.errors import DuplicateModalityError, ModgraphError, PluginError, UnknownModalityError
from modgraph.plugins import PluginHost

TOY_DISTRIBUTION, TOY_VERSION = toyplugin.DISTRIBUTION, toyplugin.__version__


def _plugin(*modalities, name="extra"):
    """A plugin object (as a module would be) registering the given modalities."""

    @hookimpl
    def register_modalities(register):
        for modality in modalities:
            register(modality)

    plugin = types.ModuleType(name)
    plugin.register_modalities = register_modalities
    return plugin


def test_toy_plugin_registers_its_modalities(toy_host):
    host = toy_host
    assert sorted(host.modalities()) == ["toyaudio", "toycolor", "toyimg"]
    [info] = host.plugins()
    assert (info.name, info.distribution, info.version) == ("toy", TOY_DISTRIBUTION, TOY_VERSION)
    assert info.modalities == ["toyimg", "toyaudio", "toycolor"]
    modality = host.get("toyimg")
    assert isinstance(modality, toyplugin.ToyImage)
    assert (modality.distribution, modality.distribution_version) == (TOY_DISTRIBUTION, TOY_VERSION)


def test_a_plugin_added_later_is_picked_up(toy_host):
    host = toy_host
    assert "toyextra" not in host.modalities()

    class ToyExtra(toyplugin.ToyColor):
        name = "toyextra"

    host.add_plugin(_plugin(ToyExtra()), name="extra", distribution="modgraph-extra", version="2.0")
    assert host.get("toyextra").distribution == "modgraph-extra"
    assert [p.distribution for p in host.plugins()] == [TOY_DISTRIBUTION, "modgraph-extra"]


def test_duplicate_modality_names_both_distributions(toy_host):
    host = toy_host
    host.add_plugin(_plugin(toyplugin.ToyAudio()), name="copycat", distribution="modgraph-copycat", version="1.0")
    with pytest.raises(DuplicateModalityError) as info:
        host.modalities()
    message = str(info.value)
    assert "toyaudio" in message
    assert TOY_DISTRIBUTION in message and "modgraph-copycat" in message
    assert "MODGRAPH_LOAD_PLUGINS" in message


def test_registering_something_that_is_not_a_modality_is_a_plugin_error():
    host = PluginHost(load_entry_points=False)
    host.add_plugin(_plugin("not a modality"), name="broken", distribution="modgraph-broken")
    with pytest.raises(PluginError, match="broken.*not a modgraph.Modality"):
        host.modalities()


def test_a_modality_with_an_invalid_name_is_rejected_at_registration():
    class BadName(toyplugin.ToyColor):
        name = "Bad Name"

    host = PluginHost(load_entry_points=False)
    host.add_plugin(_plugin(BadName()), name="bad", distribution="modgraph-bad")
    with pytest.raises(ModgraphError, match="'Bad Name' must match"):
        host.modalities()


def test_unknown_modality_lists_known_modalities_and_plugins(toy_host):
    with pytest.raises(UnknownModalityError) as info:
        toy_host.get("toyvideo")
    message = str(info.value)
    assert "'toyvideo'" in message
    for known in ("toyimg", "toyaudio", "toycolor", f"{TOY_DISTRIBUTION} {TOY_VERSION}"):
        assert known in message


# -- entry points --------------------------------------------------------------------------
def test_empty_load_plugins_loads_no_entry_point(toy_installed, monkeypatch):
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "")
    host = PluginHost()
    assert host.modalities() == {}
    assert host.plugins() == []


@pytest.mark.parametrize("allowed", [TOY_DISTRIBUTION, "toy", f" {TOY_DISTRIBUTION} , nothing-else "])
def test_load_plugins_selects_by_distribution_or_entry_point_name(toy_installed, monkeypatch, allowed):
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", allowed)
    host = PluginHost()
    assert sorted(host.modalities()) == ["toyaudio", "toycolor", "toyimg"]
    [info] = host.plugins()
    assert (info.distribution, info.version) == (TOY_DISTRIBUTION, TOY_VERSION)


def test_installed_vision_plugin_loads_only_when_allowed(toy_installed, monkeypatch):
    assert "mnist" not in PluginHost().modalities()
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "modgraph-vision")
    host = PluginHost()
    assert sorted(host.modalities()) == ["fmnist", "gtsrb", "mnist"]
    assert [p.distribution for p in host.plugins()] == ["modgraph-vision"]
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", f"modgraph-vision,{TOY_DISTRIBUTION}")
    assert sorted(PluginHost().modalities()) == ["fmnist", "gtsrb", "mnist", "toyaudio", "toycolor", "toyimg"]


def test_load_entry_points_false_ignores_installed_plugins(toy_installed):
    assert PluginHost(load_entry_points=False).modalities() == {}


def test_duplicate_across_installed_distributions(toy_installed, install_distribution, monkeypatch):
    install_distribution("modgraph-toy-fork", "9.9", {"toyfork": "toyplugin_fork"}, modules={"toyplugin_fork": (
        "from modgraph import hookimpl\nimport toyplugin\n\n"
        "@hookimpl\ndef register_modalities(register):\n    register(toyplugin.ToyImage())\n")})
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", f"{TOY_DISTRIBUTION},modgraph-toy-fork")
    with pytest.raises(DuplicateModalityError) as info:
        PluginHost().modalities()
    assert "'toyimg'" in str(info.value)
    assert TOY_DISTRIBUTION in str(info.value) and "modgraph-toy-fork" in str(info.value)


def test_an_entry_point_that_fails_to_import_is_a_plugin_error(install_distribution, monkeypatch):
    install_distribution("modgraph-ghost", "0.1", {"ghost": "modgraph_ghost_not_there"})
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "modgraph-ghost")
    with pytest.raises(PluginError) as info:
        PluginHost().modalities()
    assert "'ghost'" in str(info.value) and "'modgraph-ghost'" in str(info.value)


# -- the CLI ---------------------------------------------------------------------------------
def test_plugins_command_lists_distribution_version_and_modalities(toy_installed):
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    assert f"{TOY_DISTRIBUTION} {TOY_VERSION}: toyimg, toyaudio, toycolor" in result.output


def test_plugins_command_with_nothing_installed():
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0
    assert "No modgraph plugins installed" in result.output


def test_cli_unknown_modality_is_one_line_naming_what_exists(toy_installed):
    result = CliRunner().invoke(main, ["add-modality", "toyvideo", "--epochs", "1"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: unknown modality 'toyvideo'")
    assert "toyimg" in line and TOY_DISTRIBUTION in line
