"""The istn-sk command line: the reference workflow end to end, configs, NIfTI outputs, errors."""

import json
import re
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
from cli_helpers import run
from click.testing import CliRunner
from istn_sk.cli.main import main
from PIL import Image

from istn_sk import ISTNAdapter, TaskClassifier, load_model, make_shifted_shapes
from istn_sk.io import read_image, write_image

TINY = ["--nf", "2", "--batch-size", "8", "--random-state", "0"]
AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, 4], [0, 0, 2.5, 7], [0, 0, 0, 1]])




@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_manifest):
    """Two sites of 12x12 PNG shapes (site B moved, darker), train and test splits."""
    return shapes_manifest(tmp_path_factory.mktemp("shapes"), train_of_12=8)


@pytest.fixture(scope="module")
def workflow(shapes, tmp_path_factory):
    """The reference workflow: T_S -> adapt + fine-tune T_S2T -> transform -> evaluate."""
    runs = tmp_path_factory.mktemp("runs")
    data = ["--train-set", shapes, "--train-where", "split=train", "--label-key", "label"]
    run("train-task", *data, "--source-site", "A", "--model-type", "classifier",
        "--max-epochs", "2", "--test-set", shapes, "--test-where", "split=test", *TINY,
        "-o", runs / "task_s")
    run("fit", *data, "--source-site", "A", "--target-site", "B", "--task-model",
        runs / "task_s" / "model.pt", "--finetune", "--max-epochs", "2", "--png",
        "--n-samples", "2", "--test-set", shapes, "--test-where", "split=test", *TINY,
        "-o", runs / "istn")
    run("transform", shapes, "--where", "site=A", "--adapter", runs / "istn" / "adapter.pt",
        "--difference", "--displacement", "-o", runs / "s2t")
    evaluated = run("evaluate", "--task-model", runs / "task_s" / "model.pt", "--task-model",
                    runs / "istn" / "task.pt", "--test-set", shapes, "--test-where",
                    "split=test", "--label-key", "label", "-o", runs / "evaluation")
    return runs, evaluated


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys; from istn_sk.cli.main import main; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    # run outside the checkout, so the installed package is imported, not the source folder
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())
    for command in ([], ["fit"], ["transform"], ["train-task"], ["predict"], ["evaluate"],
                    ["protocol"], ["report"], ["datasets"], ["datasets", "make"],
                    ["datasets", "list"],
                    ["plugins"]):
        assert "Usage: " in run(*command, "--help").output


def test_train_task_writes_model_history_and_config(workflow):
    runs, _ = workflow
    folder = runs / "task_s"
    task = load_model(folder / "model.pt")
    assert isinstance(task, TaskClassifier) and task.nf == 2
    history = pd.read_csv(folder / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and "valid_accuracy" in history
    assert json.loads((folder / "history.json").read_text())[1]["epoch"] == 2
    config = json.loads((folder / "config.json").read_text())
    assert config["max_epochs"] == 2 and config["train_where"] == {"split": "train"}
    assert (folder / "report" / "history-curves.png").stat().st_size > 0


def test_fit_saves_adapter_task_history_samples_and_report(workflow):
    runs, _ = workflow
    folder = runs / "istn"
    adapter = load_model(folder / "adapter.pt")
    assert isinstance(adapter, ISTNAdapter) and adapter.nf == 2 and adapter.max_epochs == 2
    assert isinstance(load_model(folder / "task.pt"), TaskClassifier)
    history = pd.read_csv(folder / "history.csv")
    assert {"gan_loss", "dis_loss", "task_loss", "valid_accuracy"} <= set(history.columns)
    assert sorted(p.name for p in (folder / "samples" / "epoch-0002").iterdir()) == [
        "img000.png", "img001.png"]
    for name in ("explanation.png", "history-curves.png"):
        assert (folder / "report" / name).stat().st_size > 0
    config = json.loads((folder / "config.json").read_text())
    assert config["finetune"] is True and config["task_model"].endswith("task_s/model.pt")


def test_transform_writes_s2t_difference_displacement_and_a_manifest(workflow, shapes):
    runs, _ = workflow
    folder = runs / "s2t"
    table = pd.read_csv(folder / "manifest.tsv", sep="\t")
    assert len(table) == 12 and set(table["site"]) == {"A"}
    assert table["image"][0] == "images/A/img000.png"
    adapter = load_model(runs / "istn" / "adapter.pt")
    expected = adapter.transform(read_image(shapes.parent / "A/img000.png")[None])[0]
    np.testing.assert_allclose(read_image(folder / table["image"][0]), expected, atol=1 / 255)
    assert np.load(folder / table["displacement"][0]).shape == (2, 12, 12)
    assert (folder / table["difference"][0]).is_file()
    # the written manifest feeds train-task: T_S2T on S2T images (the sequential scheme)
    run("train-task", "--train-set", folder / "manifest.tsv", "--label-key", "label",
        "--model-type", "classifier", "--max-epochs", "1", "-q", *TINY, "-o", runs / "t_s2t")
    assert (runs / "t_s2t" / "model.pt").is_file()


def test_transform_keeps_the_format_and_bit_depth_of_raster_inputs(workflow, shapes, tmp_path):
    runs, _ = workflow
    image = read_image(shapes.parent / "A/img000.png")
    inputs = [write_image(tmp_path / "a.png", image, bit_depth=16),
              write_image(tmp_path / "b.tif", image, bit_depth=16),
              write_image(tmp_path / "c.jpg", image)]
    run("transform", *inputs, "--adapter", runs / "istn" / "adapter.pt", "--difference",
        "--displacement", "-o", tmp_path / "s2t")
    out = tmp_path / "s2t"
    table = pd.read_csv(out / "manifest.tsv", sep="\t")
    assert table["image"].tolist() == ["images/a.png", "images/b.tif", "images/c.jpg"]
    assert table["difference"].tolist() == [f"difference/{n}.png" for n in "abc"]
    assert table["displacement"].tolist() == [f"displacement/{n}.npy" for n in "abc"]
    assert all((out / "displacement" / f"{n}.png").is_file() for n in "abc")
    with Image.open(out / "images" / "a.png") as written:
        assert written.mode == "I;16"
    assert tifffile.imread(out / "images" / "b.tif").dtype == np.uint16
    adapter = load_model(runs / "istn" / "adapter.pt")
    expected = adapter.transform(np.stack([read_image(path) for path in inputs]))
    for path, want, atol in zip(table["image"], expected, (1 / 65535, 1 / 65535, 0.1),
                                strict=True):
        np.testing.assert_allclose(read_image(out / path), want, atol=atol)


def test_evaluate_prints_and_saves_the_protocol_table(workflow):
    runs, result = workflow
    table = pd.read_csv(runs / "evaluation" / "evaluation.csv")
    assert table[["model", "evaluated_on"]].values.tolist() == [
        ["task_s/model", "A"], ["task_s/model", "B"], ["istn/task", "A"], ["istn/task", "B"]]
    assert table["n"].tolist() == [4, 4, 4, 4] and table["accuracy"].between(0, 1).all()
    assert re.search(r"^\| task_s/model +\| A +\| none +\| +4 \|", result.output, re.M)
    assert (runs / "evaluation" / "evaluation.md").is_file()
    predictions = pd.read_csv(runs / "evaluation" / "predictions.csv")
    assert len(predictions) == 16 and {"probability_0", "probability_2"} <= set(predictions)


def test_predict_applies_itn_and_stn_on_request(workflow, shapes):
    runs, _ = workflow
    common = ["--task-model", runs / "istn" / "task.pt", "--test-set", shapes,
              "--test-where", "site=A"]
    outputs = {}
    for flags in ([], ["--itn"], ["--stn"], ["--itn", "--stn"]):
        folder = runs / ("predict" + "".join(flags))
        adapter = ["--adapter", runs / "istn" / "adapter.pt"] if flags else []
        run("predict", *common, *adapter, *flags, "-o", folder)
        outputs[tuple(flags)] = pd.read_csv(folder / "predictions.csv")
    assert all(len(table) == 12 for table in outputs.values())
    task = load_model(runs / "istn" / "task.pt")
    adapter = load_model(runs / "istn" / "adapter.pt")
    images = np.stack([read_image(shapes.parent / p) for p in outputs[()]["image"]])
    expected = task.predict_proba(adapter.transform(images))[:, 0]
    np.testing.assert_allclose(outputs[("--itn", "--stn")]["probability_0"], expected,
                               rtol=1e-4)
    error = run("predict", *common, "--itn", "-o", runs / "no-adapter", ok=False)
    assert error.exit_code == 1 and "give --adapter" in error.output


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Two sites of 12^3 NIfTI volumes with a non-trivial affine, masks and z-scored values."""
    folder = tmp_path_factory.mktemp("volumes")
    X, y, sd = make_shifted_shapes(6, (12, 12, 12), shift=2.0, random_state=0)
    mask = np.ones((12, 12, 12), np.uint8)
    mask[:, :, 0] = 0
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / "mask.nii.gz")
    rows = []
    for i, (image, label, domain) in enumerate(zip(X, y, sd, strict=True)):
        nifti = nib.Nifti1Image(np.arctanh(image[0] * 0.95), AFFINE)
        nifti.set_qform(AFFINE, code=1)
        nifti.set_sform(AFFINE, code=4)
        nifti.header["descrip"] = b"site volume"
        nib.save(nifti, folder / f"vol{i:02d}.nii.gz")
        rows.append({"image": f"vol{i:02d}.nii.gz", "mask": "mask.nii.gz", "sex": label,
                     "site": "camcan" if domain > 0 else "ukbb"})
    pd.DataFrame(rows).to_csv(folder / "sites.csv", index=False)
    return folder / "sites.csv"


def test_nifti_fit_and_transform_keep_affine_and_header(volumes, tmp_path):
    data = ["--train-set", volumes, "--mask-key", "mask", "--normalizer", "tanh"]
    run("fit", *data, "--source-site", "camcan", "--target-site", "ukbb", "--max-epochs", "1",
        "--nii", "--n-samples", "1", "--stn", "bspline", "--set", "cp_spacing=[4,4,4]",
        "--num-workers", "1", *TINY, "-o", tmp_path / "istn")
    sample = nib.load(tmp_path / "istn" / "samples" / "epoch-0001" / "vol00.nii.gz")
    np.testing.assert_allclose(sample.affine, AFFINE)
    run("transform", volumes, "--where", "site=camcan", "--mask-key", "mask", "--normalizer",
        "tanh", "--adapter", tmp_path / "istn" / "adapter.pt", "--difference",
        "--displacement", "-o", tmp_path / "s2t")
    out = tmp_path / "s2t"
    written = nib.load(out / "images" / "vol00.nii.gz")
    np.testing.assert_allclose(written.affine, AFFINE)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 4)
    assert written.header["descrip"].tobytes().startswith(b"site volume")
    values = np.asarray(written.dataobj)
    assert values.shape == (12, 12, 12) and np.isfinite(values).all()
    assert np.abs(values).max() > 1.0   # the tanh normalizer was undone
    difference = nib.load(out / "difference" / "vol00.nii.gz")
    np.testing.assert_allclose(difference.affine, AFFINE)
    field = nib.load(out / "displacement" / "vol00.nii.gz")
    assert field.shape == (12, 12, 12, 1, 3) and field.header.get_intent()[0] == "vector"
    assert pd.read_csv(out / "manifest.tsv", sep="\t")["mask"][0].endswith("mask.nii.gz")


def test_reference_json_config_runs(shapes, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("copied into the run\n")
    config = {
        "train_set": str(shapes), "test_set": str(shapes), "label_key": "label",
        "augmentation": 0, "normalizer": "None", "input_shape": [12, 12], "num_classes": 3,
        "nf": 2, "stn": "affine", "max_displacement": 0.1, "cp_spacing": [4, 4],
        "early_stopping_epochs": 5, "learning_rate": 0.001, "dis_lr": 0.0005, "cyc_weight": 10,
        "batch_size": 8,
        "val_interval": 1, "epochs": 2, "gan_loss": "bce", "idt_loss": "l1", "dis_loss": "mse",
        "task_model": "", "finetune": 0, "files": [str(notes)],
    }
    path = tmp_path / "config_train_unidirectional.json"
    path.write_text(json.dumps(config))
    result = run("fit", "--config", path, "--model-type", "classifier", "--train-where",
                 "split=train", "--test-where", "split=test", "--source-site", "A",
                 "--target-site", "B", "--max-epochs", "1", "-q", "-o", tmp_path / "run")
    # augmentation=0 is what istn-sk does, num_classes is checked against the 3 labels
    assert "no effect" not in result.output
    used = json.loads((tmp_path / "run" / "config.json").read_text())
    assert used["lr"] == 0.001 and used["consistency_weight"] == 10
    assert used["image_shape"] == [12, 12] and used["normalizer"] == "none"
    assert used["max_epochs"] == 1   # the command line overrides the file
    adapter = load_model(tmp_path / "run" / "adapter.pt")
    assert (adapter.dis_loss, adapter.consistency_weight, len(adapter.history_)) == ("mse", 10, 1)
    assert adapter.dis_lr == 0.0005
    assert (tmp_path / "run" / "files" / "notes.txt").read_text() == "copied into the run\n"
    # config.json runs again as it is
    run("fit", "--config", tmp_path / "run" / "config.json", "-o", tmp_path / "again")
    assert len(load_model(tmp_path / "again" / "adapter.pt").history_) == 1


def test_yaml_config_and_set_pairs(shapes, tmp_path):
    (tmp_path / "task.yaml").write_text(
        f"train_set: {shapes}\nlabel_key: label\nmodel_type: classifier\nsource_site: A\n"
        "nf: 4\nmax_epochs: 2\noptimizer__weight_decay: 0.01\n")
    run("train-task", "-c", tmp_path / "task.yaml", "--set", "nf=2", "--set", "max_epochs=1",
        "-q", "-o", tmp_path / "run")
    task = load_model(tmp_path / "run" / "model.pt")
    assert (task.nf, task.max_epochs) == (2, 1)


def test_protocol_runs_the_whole_protocol(shapes, tmp_path):
    result = run("protocol", "--train-set", shapes, "--train-where", "split=train", "--test-set",
                 shapes, "--test-where", "split=test", "--label-key", "label", "--source-site",
                 "A", "--target-site", "B", "--model-type", "classifier", "--max-epochs", "1",
                 "--set", "task__max_epochs=1", "-q", *TINY, "-o", tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "report.csv")
    assert table["model"].tolist() == ["T_S", "T_S", "T_S2T", "T_T (oracle)", "Δ", "recovered"]
    assert re.search(r"^\| T_S2T +\| T +\|", result.output, re.M)
    assert "Protocol table" in (tmp_path / "report" / "report.html").read_text()


def test_report_with_the_protocol_options_runs_protocol_and_says_so(tmp_path):
    result = run("report", "--model-type", "classifier", "-o", tmp_path / "old", ok=False)
    assert "deprecated; use `istn-sk protocol`" in result.output
    assert "train_set" in result.output or "--train-set" in result.output   # protocol's error
    assert "RUN_DIR" in run("report", "--help").output


def test_datasets_list_make_and_plugins(tmp_path):
    assert "morpho-mnist" in run("datasets", "list").output
    assert "brain-sites" in run("plugins").output
    made = run("datasets", "make", "morpho-mnist", "--out", tmp_path / "digits", "--option",
               "domains=[A]", "--option", "splits=[test]", "--option", "n_samples=2",
               "--option", f"cache_dir={tmp_path / 'cache'}")
    assert "manifest.tsv" in made.output
    assert len(pd.read_csv(tmp_path / "digits" / "manifest.tsv", sep="\t")) == 2
    again = run("datasets", "make", "morpho-mnist", "--out", tmp_path / "digits", ok=False)
    assert again.exit_code == 1 and "--force" in again.output
    unknown = run("datasets", "make", "morpho-mnst", "--out", tmp_path / "x", ok=False)
    assert "did you mean 'morpho-mnist'" in unknown.output


def test_errors_are_one_line_without_traceback(shapes, tmp_path):
    broken = tmp_path / "broken.tsv"
    pd.DataFrame({"image": ["A/img000.png", "A/missing.png"], "site": ["A", "B"]}).to_csv(
        broken, sep="\t", index=False)
    (tmp_path / "A").symlink_to(shapes.parent / "A")
    missing = run("fit", "--train-set", broken, "--source-site", "A", "--target-site", "B",
                  "-o", tmp_path / "run", ok=False)
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "1 image file(s) do not exist" in missing.output and "missing.png" in missing.output
    assert not (tmp_path / "run").exists(), "a failed run must leave no output folder"
    (tmp_path / "typo.json").write_text(json.dumps({"lerning_rate": 0.1}))
    typo = run("fit", "-c", tmp_path / "typo.json", "-o", tmp_path / "run", ok=False)
    assert "unknown key 'lerning_rate' (did you mean 'learning_rate'?)" in typo.output
    typo = run("train-task", "--set", "max_epoch=1", "-o", tmp_path / "run", ok=False)
    assert "unknown key 'max_epoch' (did you mean 'max_epochs'?)" in typo.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    taken = run("transform", shapes, "--adapter", "a.pt", "-o", tmp_path / "taken", ok=False)
    assert "already exists and is not empty; pass --force" in taken.output
    site = run("fit", "--train-set", shapes, "--source-site", "A", "--target-site", "C",
               "-o", tmp_path / "site", ok=False)
    assert "no rows of site 'C'" in site.output
    debug = CliRunner().invoke(main, ["--debug", "fit", "-c", str(tmp_path / "typo.json"),
                                      "-o", str(tmp_path / "run")])
    assert isinstance(debug.exception, ValueError)


def test_null_from_set_is_a_value_not_an_omission(shapes, tmp_path):
    data = ["--train-set", shapes, "--train-where", "split=train", "--label-key", "label"]
    run("fit", *data, "--source-site", "A", "--target-site", "B", "--max-epochs", "1",
        "--set", "ema_decay=null", "--set", "task_weight=0", "-q", *TINY, "-o", tmp_path / "off")
    run("fit", *data, "--source-site", "A", "--target-site", "B", "--max-epochs", "1",
        "-q", *TINY, "-o", tmp_path / "defaults")
    off, defaults = (load_model(tmp_path / name / "adapter.pt") for name in ("off", "defaults"))
    assert (off.ema_decay, off.task_weight) == (None, 0)
    assert (defaults.ema_decay, defaults.task_weight) == (0.99, 1.0)
