"""The reference code's four config files and its manifests, run through the CLI unchanged.

The configs have the reference repository's keys and structure (values
changed only for paths, and made tiny); the manifests its layout: comma-
separated despite the ``.tsv`` name, no header, columns by position (id,
image, mask, age, sex, scanner), paths relative to the folder the scripts
run in.
"""

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run

from istn_sk import load_model
from istn_sk.datasets import make_brain_sites
from istn_sk.io import canonical_config, read_manifest

SHAPE = 12
SITES = {"camcan": ("CamCAN", 1), "ukbb": ("UKBB", 0)}   # folder: (siteX_name, scanner)


@contextmanager
def working_folder(path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


def reference_configs():
    """The four config files: the reference's keys and structure, tiny values, our paths."""
    task = {
        "train_set": "./data/camcan/filenames_train.tsv",
        "test_set": "./data/camcan/filenames_test.tsv",
        "dataset_name": "CamCAN",
        "batch_size": 4,
        "learning_rate": 0.00005,
        "val_interval": 5,
        "epochs": 1,
        "normalizer": "tanh",
        "input_shape": [SHAPE] * 3,
        "label_key": "age",
        "num_classes": 1,
        "nf": 2,
        "augmentation": 1,
        "early_stopping_epochs": 10,
    }

    def training(name, label_key, extra=()):
        config = {
            "siteA_name": "CamCAN",
            "siteA_train": "./data/camcan/filenames_train.tsv",
            "siteA_val": "./data/camcan/filenames_test.tsv",
            "siteB_name": "UKBB",
            "siteB_train": "./data/ukbb/filenames_train.tsv",
            "siteB_val": "./data/ukbb/filenames_test.tsv",
            "task_model": 0,
            "finetune": 0,
            "label_key": label_key,
            "augmentation": 1,
            "normalizer": "tanh",
            "input_shape": [SHAPE] * 3,
            "num_classes": 1,
            "nf": 2,
            "stn": "affine",
            "max_displacement": 0.1,
            "cp_spacing": [4, 4, 4],
            "early_stopping_epochs": 10,
            "learning_rate": 0.0001,
            "cyc_weight": 50,
            "batch_size": 4,
            "val_interval": 5,
            "epochs": 1,
            "gan_loss": "bce",
            "idt_loss": "l1",
            "dis_loss": "bce",
        }
        config.update(extra)
        config["files"] = [f"config/{name}", "models/itn.py"]
        return config

    inference = {
        "test_set": "./data/ukbb/filenames_test.tsv",
        "task_model": "./output/uni/task.pt",
        "itn_path": "./output/uni",
        "stn": 0,
        "stn_path": "./output/uni/adapter.pt",
        "max_displacement": 0.1,
        "cp_spacing": [4, 4, 4],
        "normalizer": "tanh",
        "input_shape": [SHAPE] * 3,
        "thresholds": [0.01, 0.05, 0.10],
        "label_key": "age",
        "num_classes": 1,
        "nf": 2,
    }
    return {
        "config_task_training.json": task,
        "config_train_unidirectional.json": training("config_train_unidirectional.json", "age"),
        "config_train_bidirectional.json": training("config_train_bidirectional.json", "sex",
                                                    {"cyc_loss": "l1"}),
        "config_inference.json": inference,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A reference-style folder: data/<site>/filenames_{train,test}.tsv, config/*.json."""
    root = tmp_path_factory.mktemp("reference")
    brains = pd.read_csv(make_brain_sites(root / "data5", n_per_site=8, shape=SHAPE,
                                          random_state=0), sep="\t")
    for folder, (_, scanner) in SITES.items():
        rows = brains[brains["site"] == folder].reset_index(drop=True)
        # both sexes among the training rows, for the binary classifier
        order = np.argsort(rows["sex"].to_numpy() != rows["sex"].iloc[0], kind="stable")
        rows = rows.iloc[np.r_[order[:1], order[-1:], order[1:-1]]].reset_index(drop=True)
        assert rows["sex"].iloc[:2].nunique() == 2
        (root / "data" / folder).mkdir(parents=True)
        for split, part in (("train", rows.iloc[:5]), ("test", rows.iloc[5:])):
            lines = [f"{r.id},./data5/{r.image},./data5/{r.mask},{r.age:.0f},"
                     f"{int(r.sex == 'M')},{scanner}" for r in part.itertuples()]
            (root / "data" / folder / f"filenames_{split}.tsv").write_text("\n".join(lines) + "\n")
    (root / "config").mkdir()
    for name, config in reference_configs().items():
        (root / "config" / name).write_text(json.dumps(config, indent=2))
    (root / "models").mkdir()
    (root / "models" / "itn.py").write_text("# the reference's ITN\n")
    with working_folder(root):
        yield root


@pytest.fixture(scope="module")
def trained(reference):
    """train-task -> fit (unidirectional) -> fit (bidirectional), as the reference's README."""
    outputs = {"task": run("train-task", "-c", "config/config_task_training.json",
                           "--model-type", "regressor", "-o", "task_models/T_S").output}
    outputs["uni"] = run("fit", "-c", "config/config_train_unidirectional.json",
                         "--model-type", "regressor", "-q", "-o", "output/uni").output
    outputs["bi"] = run("fit", "-c", "config/config_train_bidirectional.json",
                        "--model-type", "classifier", "-q", "-o", "output/bi").output
    return outputs


def test_reference_manifest_is_read_by_position(reference):
    manifest = read_manifest("data/ukbb/filenames_test.tsv")
    assert list(manifest.table.columns) == ["id", "image", "mask", "age", "sex", "scanner",
                                            "age_years"]
    assert len(manifest) == 3   # no header line: the first row is a subject
    assert (manifest.table["scanner"] == 0).all()
    np.testing.assert_allclose(manifest.table["age"], manifest.table["age_years"] / 100)
    assert all(path.is_file() for path in manifest.paths)   # relative to the current folder
    # our own manifests keep working, with a header and commas in a .tsv
    own = reference / "own.tsv"
    manifest.table.assign(image=[str(p.resolve()) for p in manifest.paths]).to_csv(
        own, index=False)
    assert list(read_manifest(own).table.columns)[:3] == ["id", "image", "mask"]


def test_train_task_with_the_reference_config(trained):
    assert "dataset CamCAN" in trained["task"]
    assert "no effect" not in trained["task"]
    task = load_model("task_models/T_S/model.pt")
    assert (task.nf, task.lr, task.max_epochs, task.batch_size) == (2, 5e-5, 1, 4)
    used = json.loads(Path("task_models/T_S/config.json").read_text())
    assert used["dataset_name"] == "CamCAN" and used["image_shape"] == [SHAPE] * 3


def test_fit_unidirectional_with_the_reference_config(trained):
    assert "no effect" not in trained["uni"]
    adapter = load_model("output/uni/adapter.pt")
    assert (adapter.mode, adapter.stn, adapter.consistency_weight, adapter.lr) == (
        "unidirectional", "affine", 50, 1e-4)
    assert len(adapter.history_) == 1
    used = json.loads(Path("output/uni/config.json").read_text())
    assert (used["source_site"], used["target_site"]) == ("CamCAN", "UKBB")
    assert Path(used["siteA_train"]).is_absolute()
    assert Path("output/uni/files/config_train_unidirectional.json").is_file()
    assert Path("output/uni/files/itn.py").is_file()
    history = pd.read_csv("output/uni/history.csv")
    assert 0 <= history["valid_mae"].iloc[-1] < 10   # ages / 100, on UKBB's val rows
    predictions = load_model("output/uni/task.pt").predict(
        np.zeros((1, 1, SHAPE, SHAPE, SHAPE), np.float32))
    assert np.isfinite(predictions).all()


def test_fit_bidirectional_with_the_reference_config(trained):
    adapter = load_model("output/bi/adapter.pt")
    assert adapter.mode == "cyclegan" and adapter.idt_loss == "l1"
    task = load_model("output/bi/task.pt")
    assert sorted(task.classes_) == [0, 1]   # sex, num_classes 1: binary
    assert "cyc_loss" in pd.read_csv("output/bi/history.csv").columns


def _evaluation(folder):
    return (pd.read_csv(Path(folder) / "evaluation.csv"),
            pd.read_csv(Path(folder) / "predictions.csv")["prediction"].to_numpy())


def test_evaluate_with_the_reference_inference_config(trained):
    run("evaluate", "-c", "config/config_inference.json", "--itn", "-q", "-o", "eval/stn0")
    table, itn_only = _evaluation("eval/stn0")
    assert table["transform"].tolist() == ["itn"] and table["n"].tolist() == [3]
    accuracies = table[[c for c in table.columns if c.startswith("acc")]].iloc[0].to_numpy()
    assert len(accuracies) == 3 and ((0 <= accuracies) & (accuracies <= 1)).all()
    assert (np.diff(accuracies) >= 0).all() and np.isfinite(table["mae"]).all()
    # the same as istn-sk's own options, ITN alone
    run("evaluate", "--task-model", "output/uni/task.pt", "--adapter", "output/uni/adapter.pt",
        "--itn", "--test-set", "data/ukbb/filenames_test.tsv", "--normalizer", "tanh",
        "--label-key", "age", "-q", "-o", "eval/own")
    np.testing.assert_array_equal(_evaluation("eval/own")[1], itn_only)
    # "stn": "affine" switches the STN on: a different transform
    config = {**reference_configs()["config_inference.json"], "stn": "affine"}
    Path("config/stn_on.json").write_text(json.dumps(config))
    run("evaluate", "-c", "config/stn_on.json", "--itn", "-q", "-o", "eval/stn1")
    table, both = _evaluation("eval/stn1")
    assert table["transform"].tolist() == ["itn+stn"]
    assert not np.array_equal(both, itn_only)
    # without --itn, as inference.py: the task model alone, and a note says so
    plain = run("evaluate", "-c", "config/config_inference.json", "-o", "eval/plain")
    assert "not applied" in plain.output
    assert _evaluation("eval/plain")[0]["transform"].tolist() == ["none"]


def test_conflicts_and_unknown_keys_are_one_clear_error(trained, reference):
    def fails(config, *args):
        path = reference / "config" / "bad.json"
        path.write_text(json.dumps(config))
        result = run(*args[:1], "-c", path, *args[1:], "-q", "-o", reference / "bad", ok=False)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert not (reference / "bad").exists()
        return result.output

    configs = reference_configs()
    uni = configs["config_train_unidirectional.json"]
    out = fails({**uni, "siteA_nme": "X"}, "fit", "--model-type", "regressor")
    assert "unknown key 'siteA_nme' (did you mean 'siteA_name'?)" in out
    out = fails({**configs["config_task_training.json"], "augmentation": "flips"}, "train-task",
                "--model-type", "regressor")
    assert ("unknown augmentation augmentation='flips'; registered: lowpass, reference, shift, "
            "translation_cutout") in out
    out = fails({**uni, "cyc_loss": "mse"}, "fit", "--model-type", "regressor")
    assert "cyc_loss='mse' but idt_loss='l1'" in out
    out = fails({**uni, "label_key": "sex", "num_classes": 3}, "fit", "--model-type",
                "classifier")
    assert "num_classes=3 means 3 classes" in out
    inference = configs["config_inference.json"]
    out = fails(inference, "evaluate", "--itn", "--stn")
    assert "stn=0 in the config switches it off" in out
    out = fails({**inference, "stn_path": "./output/bi/adapter.pt"}, "evaluate", "--itn")
    assert "'itn_path' and 'stn_path' both set 'adapter', to different files" in out
    out = fails({**inference, "nf": 4}, "evaluate", "--itn")
    assert "nf=4 in the config, but the adapter" in out


def test_itn_path_and_stn_path_may_name_one_run(reference, trained):
    known = {"adapter"}
    config = {"itn_path": "output/uni", "stn_path": "output/uni/adapter.pt"}
    assert canonical_config(config, known, origin="c") == {"adapter": "output/uni/adapter.pt"}
    assert canonical_config({"itn_path": 0, "stn_path": "", "task_model": 0}, known,
                            origin="c") == {}
