"""The pluggy registry: built-ins as plugins, third-party entry points, clear errors."""

import textwrap

import pytest

import istn_sk
from istn_sk import PluginError, get_registry
from istn_sk._registry import DISABLE_AUTOLOAD_ENV, Registry, make_plugin_manager


def test_builtins_are_registered_by_istn_sk():
    registry = Registry(make_plugin_manager(autoload=False))
    assert registry.names("spatial_transformer") == ["affine", "bspline", "none"]
    assert registry.names("loss") == ["bce", "bce_logits", "l1", "mse"]
    assert registry.names("augmentation") == ["lowpass", "reference", "shift", "translation_cutout"]
    assert registry.names("regulariser") == ["lecam", "r1"]
    assert registry.names("content_loss") == ["patch_nce"]
    entry = registry.get("spatial_transformer", "bspline")
    assert (entry.provider, entry.version) == ("istn-sk", istn_sk.__version__)


def test_unknown_name_lists_registered_names_and_suggests_one():
    registry = Registry(make_plugin_manager(autoload=False))
    expected = (r"unknown spatial_transformer stn='bsplin'; registered: affine, bspline, none"
                r".*did you mean 'bspline'")
    with pytest.raises(PluginError, match=expected):
        registry.get("spatial_transformer", "bsplin", parameter="stn")


def test_unknown_kind_is_an_error():
    with pytest.raises(PluginError, match="unknown plugin kind 'optimizer'"):
        get_registry().names("optimizer")


def test_the_process_registry_is_built_once_and_refreshed_on_request():
    first = get_registry()
    assert get_registry() is first
    refreshed = get_registry(refresh=True)
    assert refreshed is not first and get_registry() is refreshed


def test_a_duplicate_name_names_both_providers():
    class Clash:
        @istn_sk.hookimpl
        def istn_sk_register_losses(self, register):
            register.add("mse", lambda: None)

    manager = make_plugin_manager(autoload=False)
    manager.register(Clash(), name="clash-plugin")
    with pytest.raises(PluginError, match=r"loss 'mse' is registered twice: by .* and by "):
        Registry(manager)


def _fake_distribution(root, name="istn_sk_fakestn"):
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        import istn_sk

        def make_shift(context):
            return None

        @istn_sk.hookimpl
        def istn_sk_register_spatial_transformers(register):
            register.add("fake-shift", make_shift, description="test plugin")
    """))
    dist_info = root / f"{name}-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(f"[istn_sk]\nfake = {name}\n")


def test_an_installed_distribution_adds_an_stn_through_its_entry_point(tmp_path, monkeypatch):
    _fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    registry = Registry(make_plugin_manager())
    entry = registry.get("spatial_transformer", "fake-shift")
    assert (entry.provider, entry.version, entry.description) == ("istn_sk_fakestn", "1.2.3",
                                                                  "test plugin")


def test_the_environment_variable_blocks_installed_plugins(tmp_path, monkeypatch):
    _fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    registry = Registry(make_plugin_manager())
    assert "fake-shift" not in registry.names("spatial_transformer")
    assert "affine" in registry.names("spatial_transformer")
