"""The third-party plugin example ``examples/istn_sk_rigid``, installed as a user would.

A module fixture pip-installs a copy of the example (so no build output lands
in the repository) into the running environment, and uninstalls it at
teardown; the registry is refreshed both times so other tests see only the
built-ins. The build is offline (``--no-build-isolation``) when this
environment's setuptools makes wheels by itself (70.1 and later, as installed
with torch); otherwise pip fetches the build requirements.
"""

import importlib
import importlib.metadata
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import istn_sk
from istn_sk._registry import DISABLE_AUTOLOAD_ENV
from istn_sk.nn import STNContext, Warp

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "istn_sk_rigid"
DISTRIBUTION = "istn-sk-rigid"
VERSION = "0.1.0"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False)


def _build_flags() -> list[str]:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return []
    major, minor = (int(part) for part in version.split(".")[:2])
    return ["--no-build-isolation", "--no-index"] if (major, minor) >= (70, 1) else []


def _refresh_registry() -> istn_sk.Registry:
    importlib.invalidate_caches()
    return istn_sk.get_registry(refresh=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The process-wide registry with ``istn-sk-rigid`` installed."""
    source = tmp_path_factory.mktemp("example") / "istn_sk_rigid"
    shutil.copytree(EXAMPLE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
        installed = _pip("install", "--no-deps", *_build_flags(), str(source))
        if installed.returncode != 0:
            pytest.fail(f"pip install of {source} failed:\n{installed.stdout}{installed.stderr}",
                        pytrace=False)
        yield _refresh_registry()
        removed = _pip("uninstall", "-y", DISTRIBUTION)
        sys.modules.pop("istn_sk_rigid", None)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "rigid" not in _refresh_registry().names("spatial_transformer")
    _refresh_registry()


def _context(image_shape, **options) -> STNContext:
    return STNContext(image_shape=image_shape, in_channels=1, nf=4,
                      cp_spacing=(4,) * len(image_shape), max_displacement=0.2, options=options)


def _rigid_fit(displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine map ``q -> A q + b`` of one field's points, and its residuals.

    ``q`` are voxel coordinates about the image centre; ``displacement`` is
    ``(D, *spatial)`` in voxels.
    """
    shape = displacement.shape[1:]
    grid = np.stack(np.meshgrid(*[np.arange(size) for size in shape], indexing="ij"))
    q = (grid - np.reshape([(size - 1) / 2 for size in shape], (-1, *[1] * len(shape))))
    q = q.reshape(len(shape), -1).T
    moved = q + displacement.reshape(len(shape), -1).T.astype(np.float64)
    design = np.hstack([q, np.ones((len(q), 1))])
    solution, *_ = np.linalg.lstsq(design, moved, rcond=None)
    return solution[:-1].T, moved - design @ solution


def test_the_entry_point_registers_rigid_with_its_distribution(registry):
    entry = registry.get("spatial_transformer", "rigid")
    assert (entry.provider, entry.version) == (DISTRIBUTION, VERSION)
    assert entry.factory.__module__ == "istn_sk_rigid"
    assert {"affine", "bspline", "none", "rigid"} <= set(registry.names("spatial_transformer"))


@pytest.mark.parametrize("image_shape", [(12, 10), (8, 6, 7)])
def test_rigid_is_the_identity_at_initialisation(registry, image_shape):
    stn = registry.get("spatial_transformer", "rigid").factory(_context(image_shape))
    x = torch.randn(3, 1, *image_shape, generator=torch.Generator().manual_seed(0))
    field = stn(x)
    assert field.shape == (3, len(image_shape), *image_shape)
    assert torch.equal(field, torch.zeros_like(field))
    torch.testing.assert_close(Warp()(x, field), x, atol=1e-5, rtol=0)


def test_rigid_turns_about_the_centre_within_its_caps(registry):
    """Head biases set to known raw values give the documented rotation and translation."""
    stn = registry.get("spatial_transformer", "rigid").factory(
        _context((9, 11), max_angle=0.5, max_translation=0.5))
    raw = torch.tensor([0.4, -0.2, 0.6])
    with torch.no_grad():
        stn.head.bias.copy_(torch.atanh(raw))
        field = stn(torch.zeros(1, 1, 9, 11))[0].double()
    angle = 0.4 * 0.5
    translation = np.array([-0.2 * 0.5 * 4.0, 0.6 * 0.5 * 5.0])
    matrix, residual = _rigid_fit(field.numpy())
    expected = [[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    np.testing.assert_allclose(field[:, 4, 5].numpy(), translation, atol=1e-5)
    assert np.abs(residual).max() < 1e-4


def test_rigid_3d_rotations_are_proper_for_any_weights(registry):
    stn = registry.get("spatial_transformer", "rigid").factory(_context((6, 7, 8)))
    with torch.no_grad():
        stn.head.weight.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 1, 6, 7, 8, generator=torch.Generator().manual_seed(2))
    rotation, _ = stn.motion(x)
    eye = torch.eye(3).expand(4, 3, 3)
    torch.testing.assert_close(rotation.transpose(1, 2) @ rotation, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(4), atol=1e-5, rtol=0)
    assert not torch.allclose(rotation, eye, atol=1e-3)


def test_an_adapter_with_the_rigid_stn_learns_a_rigid_motion(registry):
    X, _, sample_domain = istn_sk.make_shifted_shapes(24, (12, 12), random_state=0)
    adapter = istn_sk.ISTNAdapter(stn="rigid", nf=4, max_epochs=2, batch_size=16,
                                  random_state=0)
    adapter.fit(X, sample_domain=sample_domain)
    source = X[sample_domain > 0]
    S2T = adapter.transform(source)
    assert S2T.shape == source.shape
    assert np.isfinite(S2T).all()
    fields = adapter.explain(source)["displacement"]
    assert fields.shape == (len(source), 2, 12, 12)
    assert np.abs(fields).max() > 1e-4, "the rigid STN did not move away from the identity"
    for field in fields:
        matrix, residual = _rigid_fit(field)
        assert np.abs(residual).max() < 1e-3
        np.testing.assert_allclose(matrix.T @ matrix, np.eye(2), atol=1e-4)
        assert np.linalg.det(matrix) == pytest.approx(1.0, abs=1e-4)


def test_istn_sk_plugins_lists_rigid_with_its_provider(registry):
    from click.testing import CliRunner
    from istn_sk.cli.main import main

    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["spatial_transformer", "rigid", DISTRIBUTION, VERSION] in [row[:4] for row in rows]
