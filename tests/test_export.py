"""Export for deployment: ONNX and TorchScript match torch, safetensors rebuilds, clear errors."""

import functools
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from istn_sk.cli.main import main
from safetensors import safe_open
from safetensors.torch import load_file
from sklearn.exceptions import NotFittedError

from istn_sk import (
    ISTNAdapter,
    TaskClassifier,
    TaskNetwork,
    TaskRegressor,
    export,
    make_shifted_shapes,
    save_model,
)
from istn_sk._onnx import matrix_exp
from istn_sk._validation import ImageLayout

TOLERANCE = 1e-5
#: Batch sizes other than the export's example batch (2), the whole set included.
BATCHES = (1, 5, 48)
ADAPTERS = {
    "2d-itn-affine": ((16, 16), dict(stn="affine", mode="cyclegan")),
    "2d-itn-bspline": ((16, 16), dict(stn="bspline", cp_spacing=4)),
    "3d-itn-affine": ((8, 8, 8), dict(stn="affine")),
    "3d-bias-field-affine": ((8, 8, 8), dict(stn="affine", itn_options={"bias_field": 2})),
}


@functools.cache
def images(shape):
    return make_shifted_shapes(24, shape, shift=2.0, random_state=0)


@functools.cache
def fitted(case):
    """A fitted adapter (or task model) whose STN heads are moved so that warps shift pixels."""
    if case == "task":
        X, y, sd = images((16, 16))
        return TaskClassifier(nf=4, max_epochs=3, random_state=0).fit(X, y, sample_domain=sd)
    shape, params = ADAPTERS[case]
    X, _, sd = images(shape)
    adapter = ISTNAdapter(nf=4, max_epochs=3, batch_size=16, random_state=0, **params)
    adapter.fit(X, sample_domain=sd)
    with torch.no_grad():
        for istn in adapter.net_.module_.values():
            istn.stn.head.bias.add_(0.3)
            if istn.bias_field is not None:   # a field that changes intensities by position
                istn.bias_field.gain.copy_(0.2 * torch.linspace(-1, 1, len(istn.bias_field.gain)))
                istn.bias_field.offset.copy_(0.3 * torch.linspace(1, -1, len(istn.bias_field.gain)))
    return adapter


def reference(case, direction, X):
    """What the estimator computes in torch: transforms, or the task network's logits."""
    estimator = fitted(case)
    if case == "task":
        return estimator.forward(X).numpy()
    return estimator.transform(X) if direction == "s2t" else estimator.inverse_transform(X)


def run_cli(*args, ok=True):
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.parametrize("case", list(ADAPTERS))
def test_the_warps_compared_below_move_pixels(case):
    X = images(ADAPTERS[case][0])[0]
    assert np.abs(fitted(case).explain(X)["displacement"]).mean() > 0.5


@pytest.mark.parametrize("case, direction", [
    ("2d-itn-affine", "s2t"), ("2d-itn-affine", "t2s"), ("2d-itn-bspline", "s2t"),
    ("3d-itn-affine", "s2t"), ("3d-bias-field-affine", "s2t"), ("task", None),
])
def test_onnx_matches_torch_at_other_batch_sizes(case, direction, tmp_path):
    shape = (16, 16) if case == "task" else ADAPTERS[case][0]
    X = images(shape)[0]
    path = export(fitted(case), tmp_path / "model.onnx", direction=direction)
    model = onnx.load(path)
    assert [(opset.domain, opset.version) for opset in model.opset_import] == [("", 20)]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    described = json.loads({p.key: p.value for p in model.metadata_props}["istn_sk"])
    assert described["input"]["shape"] == ["batch", 1, *shape]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["istn_sk"]) == described
    if case == "task":
        assert described["classes"] == [0, 1, 2]
    # torch's own output for an image moves by up to 2e-5 with the batch it is computed
    # in (another convolution kernel for a batch of 1); the reference is its whole-set one
    whole = reference(case, direction or "s2t", X)
    for n in BATCHES:
        out = session.run(None, {"images": X[:n]})[0]
        expected = whole[:n]
        assert out.shape == expected.shape
        assert np.abs(out - expected).max() <= TOLERANCE


@pytest.mark.parametrize("case, direction", [
    ("2d-itn-affine", "s2t"), ("2d-itn-affine", "t2s"), ("2d-itn-bspline", "s2t"),
    ("3d-itn-affine", "s2t"), ("3d-bias-field-affine", "s2t"), ("task", None),
])
def test_torchscript_matches_torch_at_other_batch_sizes(case, direction, tmp_path):
    X = images((16, 16) if case == "task" else ADAPTERS[case][0])[0]
    path = export(fitted(case), tmp_path / "model.pt", "torchscript", direction=direction)
    files = {"istn_sk.json": ""}
    traced = torch.jit.load(path, _extra_files=files)
    assert json.loads(files["istn_sk.json"])["estimator"] == type(fitted(case)).__name__
    for n in BATCHES:
        with torch.no_grad():
            out = traced(torch.from_numpy(X[:n])).numpy()
        assert np.abs(out - reference(case, direction or "s2t", X[:n])).max() <= TOLERANCE


def test_a_regressor_exports_its_predictions(tmp_path):
    X, y, sd = images((16, 16))
    reg = TaskRegressor(nf=4, max_epochs=2, random_state=0).fit(X, 20.0 + y, sample_domain=sd)
    files = {"istn_sk.json": ""}
    traced = torch.jit.load(export(reg, tmp_path / "reg.pt", "torchscript"),
                            _extra_files=files)
    assert json.loads(files["istn_sk.json"])["output"] == {"name": "prediction",
                                                          "shape": ["batch", 1]}
    with torch.no_grad():
        out = traced(torch.from_numpy(X[:5])).numpy()
    assert np.abs(out.ravel() - reg.predict(X[:5])).max() <= TOLERANCE


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_the_exported_matrix_exponential_is_as_accurate_as_torchs(scale):
    a = scale * torch.randn(64, 3, 3, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    exact = torch.linalg.matrix_exp(a)

    def error(result):
        return ((result.double() - exact).abs().amax(dim=(1, 2))
                / exact.abs().amax(dim=(1, 2))).max()

    assert error(matrix_exp(a.float())) <= error(torch.linalg.matrix_exp(a.float()))


def test_the_exported_matrix_exponential_gives_the_affine_stns_rotations():
    angles = (torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) - 0.5) * np.pi / 2
    skew = torch.zeros(64, 3, 3)
    skew[:, [0, 0, 1], [1, 2, 2]] = angles
    skew = skew - skew.transpose(1, 2)
    assert (matrix_exp(skew) - torch.linalg.matrix_exp(skew)).abs().max() <= 1e-6


def test_safetensors_hold_the_state_dict_and_the_sidecar_rebuilds_the_istn(tmp_path):
    adapter = fitted("2d-itn-bspline")
    path = export(adapter, tmp_path / "s2t.safetensors", "safetensors")
    tensors = load_file(path)
    state = adapter.net_.module_["s2t"].state_dict()
    assert sorted(tensors) == sorted(state)
    assert all(torch.equal(tensors[key], value) for key, value in state.items())
    sidecar = json.loads((tmp_path / "s2t.safetensors.json").read_text())
    with safe_open(path, "pt") as handle:
        assert json.loads(handle.metadata()["istn_sk"]) == sidecar
    assert sidecar["direction"] == "s2t" and sidecar["estimator"] == "ISTNAdapter"
    architecture = sidecar["architecture"]
    assert architecture["adapter_params"]["cp_spacing"] == [4, 4]
    layout = ImageLayout((), architecture["in_channels"], tuple(architecture["image_shape"]))
    istn = ISTNAdapter(**architecture["adapter_params"])._build_istn(layout)
    istn.load_state_dict(tensors)
    X = images((16, 16))[0]
    with torch.no_grad():
        out = istn.eval()(torch.from_numpy(X)).numpy()
    assert np.abs(out - adapter.transform(X)).max() <= TOLERANCE


def test_safetensors_of_a_classifier_rebuild_its_network_and_name_its_classes(tmp_path):
    clf = fitted("task")
    path = export(clf, tmp_path / "task.safetensors", "safetensors")
    sidecar = json.loads((tmp_path / "task.safetensors.json").read_text())
    assert sidecar["classes"] == [0, 1, 2]
    assert sidecar["output"] == {"name": "logits", "shape": ["batch", 3]}
    assert sidecar["architecture"]["network"] == "istn_sk._task.TaskNetwork"
    network = TaskNetwork(**sidecar["architecture"]["kwargs"])
    network.load_state_dict(load_file(path))
    X = images((16, 16))[0]
    with torch.no_grad():
        np.testing.assert_array_equal(network.eval()(torch.from_numpy(X)).numpy(),
                                      clf.forward(X).numpy())


def test_unfitted_estimators_unknown_formats_and_directions_are_refused(tmp_path):
    with pytest.raises(NotFittedError, match="ISTNAdapter is not fitted"):
        export(ISTNAdapter(), tmp_path / "a.onnx")
    with pytest.raises(NotFittedError, match="TaskClassifier is not fitted"):
        export(TaskClassifier(), tmp_path / "t.onnx")
    with pytest.raises(ValueError, match="known formats: onnx, safetensors, torchscript"):
        export(fitted("task"), tmp_path / "t.pkl", "pickle")
    with pytest.raises(ValueError, match=r"direction must be one of \['s2t'\]"):
        export(fitted("2d-itn-bspline"), tmp_path / "a.onnx", direction="t2s")
    with pytest.raises(ValueError, match="leave direction=None"):
        export(fitted("task"), tmp_path / "t.onnx", direction="s2t")
    with pytest.raises(TypeError, match="not dict"):
        export({}, tmp_path / "t.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("format, module", [("onnx", "onnxscript"),
                                            ("safetensors", "safetensors")])
def test_a_missing_dependency_names_the_extra(format, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"needs {module}.*pip install 'istn-sk\[export\]'"):
        export(fitted("task"), tmp_path / "model", format)
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    clf = fitted("task")
    path, sidecar = tmp_path / "task.safetensors", tmp_path / "task.safetensors.json"
    sidecar.write_text("mine")
    with pytest.raises(FileExistsError, match=r"task\.safetensors\.json exists"):
        export(clf, path, "safetensors")
    assert sidecar.read_text() == "mine" and not path.exists()
    export(clf, path, "safetensors", overwrite=True)
    assert json.loads(sidecar.read_text())["estimator"] == "TaskClassifier"
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        export(clf, path, "safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, sidecar.name]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A folder like `istn-sk fit` writes: adapter.pt (cyclegan, ITN + affine) and task.pt."""
    folder = tmp_path_factory.mktemp("run")
    save_model(fitted("2d-itn-affine"), folder / "adapter.pt")
    save_model(fitted("task"), folder / "task.pt")
    return folder


def test_cli_exports_the_adapter_the_task_model_and_the_inverse(run_folder, tmp_path):
    X = images((16, 16))[0]
    run_cli("export", run_folder, "-o", tmp_path / "s2t.onnx")
    session = ort.InferenceSession(tmp_path / "s2t.onnx", providers=["CPUExecutionProvider"])
    s2t = session.run(None, {"images": X})[0]
    assert np.abs(s2t - fitted("2d-itn-affine").transform(X)).max() <= TOLERANCE
    result = run_cli("export", run_folder, "--task", "--format", "safetensors",
                     "-o", tmp_path / "task.safetensors")
    assert "task.safetensors.json" in result.output
    assert sorted(load_file(tmp_path / "task.safetensors")) == sorted(
        fitted("task").module_.state_dict())
    run_cli("export", run_folder / "adapter.pt", "--b2a", "--format", "torchscript",
            "-o", tmp_path / "t2s.pt")
    with torch.no_grad():
        t2s = torch.jit.load(tmp_path / "t2s.pt")(torch.from_numpy(X)).numpy()
    assert np.abs(t2s - fitted("2d-itn-affine").inverse_transform(X)).max() <= TOLERANCE


def test_cli_refuses_existing_outputs_unknown_formats_and_folders_without_models(run_folder,
                                                                                 tmp_path):
    out = tmp_path / "task.pt"
    out.write_text("mine")
    refused = run_cli("export", run_folder, "--task", "--format", "torchscript", "-o", out,
                      ok=False)
    assert refused.exit_code == 1 and "exists; --force replaces it" in refused.output
    assert out.read_text() == "mine"
    run_cli("export", run_folder, "--task", "--format", "torchscript", "-o", out, "--force")
    assert torch.jit.load(out)(torch.zeros(3, 1, 16, 16)).shape == (3, 3)
    unknown = run_cli("export", run_folder, "--format", "pickle", "-o", out, ok=False)
    assert unknown.exit_code == 2
    assert "'onnx', 'safetensors', 'torchscript'" in unknown.output
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_cli("export", empty, "-o", tmp_path / "x.onnx", ok=False)
    assert missing.exit_code == 1 and "neither adapter.pt nor model.pt" in missing.output
