"""docs/plugins.md stays true: every hook is documented and the minimal plugin works."""

import configparser
import inspect
import re
import types
from pathlib import Path

import pytest
import torch

import istn_sk
from istn_sk import hookspecs
from istn_sk._registry import make_plugin_manager
from istn_sk.nn import STNContext, Warp

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
MINIMAL_SECTION = "A minimal complete plugin"


def _sections() -> dict[str, str]:
    """The text under each ``## `` heading of the guide, by heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def _minimal_plugin() -> types.ModuleType:
    blocks = _code_blocks(_sections()[MINIMAL_SECTION], "python")
    assert len(blocks) == 1, f"expected one python block under '## {MINIMAL_SECTION}'"
    module = types.ModuleType("istn_sk_docs_minimal_plugin")
    exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
    return module


def test_every_hookspec_has_a_heading_in_the_guide():
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("istn_sk_")]
    assert len(hooks) >= 4
    headings = [line for line in DOC.read_text().splitlines() if line.startswith("#")]
    undocumented = [hook for hook in hooks if not any(hook in line for line in headings)]
    assert undocumented == [], f"hooks without a heading in {DOC.name}: {undocumented}"


def test_the_minimal_plugin_declares_an_istn_sk_entry_point():
    config = configparser.ConfigParser()
    config.read_string("\n".join(_code_blocks(_sections()[MINIMAL_SECTION], "ini")))
    entry_points = config["options.entry_points"]["istn_sk"].split("=")
    assert [part.strip() for part in entry_points] == ["shift", config["options"]["packages"]]


def test_the_minimal_plugin_registers_a_working_stn():
    module = _minimal_plugin()
    manager = make_plugin_manager(autoload=False)
    manager.register(module)
    registry = istn_sk.Registry(manager)
    added = [(entry.kind, entry.name) for entry in registry.entries()
             if entry.provider == module.__name__]
    assert added == [("spatial_transformer", "shift")]
    factory = registry.get("spatial_transformer", "shift").factory
    for image_shape in [(12, 10), (6, 7, 8)]:
        context = STNContext(image_shape=image_shape, in_channels=1, nf=4,
                             cp_spacing=(4,) * len(image_shape), max_displacement=0.2,
                             options={"max_shift": 2.0})
        stn = factory(context)
        x = torch.randn(2, 1, *image_shape, generator=torch.Generator().manual_seed(0))
        field = stn(x)
        assert field.shape == (2, len(image_shape), *image_shape)
        assert torch.equal(field, torch.zeros_like(field))
        with torch.no_grad():
            stn.head.bias.fill_(10.0)
        shifted = stn(x)
        assert torch.allclose(shifted, torch.full_like(shifted, 2.0))
        moved = Warp()(x, shifted)
        index = (slice(None), slice(None), *[slice(0, size - 2) for size in image_shape])
        source = (slice(None), slice(None), *[slice(2, size) for size in image_shape])
        torch.testing.assert_close(moved[index], x[source], atol=1e-5, rtol=0)


def test_a_second_copy_of_the_minimal_plugin_is_an_error_naming_both_providers():
    first = _minimal_plugin()
    manager = make_plugin_manager(autoload=False)
    manager.register(first)
    manager.register(_minimal_plugin(), name="second-copy")
    with pytest.raises(istn_sk.PluginError, match="'shift' is registered twice") as error:
        istn_sk.Registry(manager)
    assert first.__name__ in str(error.value)
    assert "second-copy" in str(error.value)
