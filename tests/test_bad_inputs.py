"""Bad inputs fail early with one clear error, and a failed run leaves no output folder."""

import os
import resource
import signal
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from istn_sk.cli.main import main

from istn_sk import ISTNAdapter, TaskClassifier, TaskRegressor
from istn_sk.io import (
    ImageDataset,
    files_manifest,
    read_config,
    read_image,
    read_manifest,
    write_image,
)

TINY = ["--nf", "2", "--batch-size", "4", "--max-epochs", "1", "--random-state", "0", "-q"]
RNG = np.random.default_rng(0)


def png(folder, name, shape=(1, 8, 8)):
    """A small PNG of random values in [-1, 1]; returns its name."""
    write_image(folder / name, RNG.uniform(-1, 1, shape).astype(np.float32))
    return name


def nifti(folder, name, data=None):
    """A 6^3 NIfTI volume; returns its name."""
    data = RNG.uniform(-1, 1, (6, 6, 6)).astype(np.float32) if data is None else data
    nib.save(nib.Nifti1Image(data, np.eye(4)), folder / name)
    return name


def manifest(folder, images, *, sites=None, labels=None, name="manifest.tsv"):
    """A TSV manifest of ``images``; sites alternate A, B unless given."""
    sites = sites or ["A" if i % 2 == 0 else "B" for i in range(len(images))]
    table = {"image": images, "site": sites}
    if labels is not None:
        table["label"] = labels
    pd.DataFrame(table).to_csv(folder / name, sep="\t", index=False)
    return folder / name


def pngs(folder, n=4, **kwargs):
    return [png(folder, f"img{i}.png", **kwargs) for i in range(n)]


def adapter_file(folder, shape):
    """A one-epoch ISTNAdapter fitted on images of ``shape`` (channels first), saved."""
    from istn_sk import save_model

    X = RNG.uniform(-1, 1, (4, *shape)).astype(np.float32)
    fitted = ISTNAdapter(nf=2, max_epochs=1, batch_size=4, random_state=0,
                         spatial_dims=len(shape) - 1).fit(X, sample_domain=[1, 1, -2, -2])
    return save_model(fitted, folder / "adapter.pt")


def fails(*args, out, match):
    """Run the CLI; it must fail with one line holding ``match`` and leave no ``out``."""
    result = CliRunner().invoke(main, [str(arg) for arg in (*args, "-o", out)])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert match in errors[0], result.output
    assert not os.path.exists(out), f"{out} left behind"
    return errors[0]


def fit(data, out, *extra, match):
    return fails("fit", "--train-set", data, "--source-site", "A", "--target-site", "B",
                 *TINY, *extra, out=out, match=match)


def test_mixed_2d_and_3d_images(tmp_path):
    data = manifest(tmp_path, [*pngs(tmp_path, 3), nifti(tmp_path, "vol.nii.gz")])
    fit(data, tmp_path / "run", match="vol.nii.gz has shape (1, 6, 6, 6)")
    with pytest.raises(ValueError, match=r"all images must match"):
        ImageDataset([tmp_path / "img0.png", tmp_path / "vol.nii.gz"])


def test_images_of_different_sizes(tmp_path):
    data = manifest(tmp_path, [*pngs(tmp_path, 3), png(tmp_path, "big.png", (1, 10, 10))])
    fit(data, tmp_path / "run", match="big.png has shape (1, 10, 10)")


def test_images_of_three_shapes_name_the_first_file_of_each(tmp_path):
    images = [*pngs(tmp_path, 3), png(tmp_path, "big.png", (1, 10, 10)),
              png(tmp_path, "wide.png", (1, 8, 12)), png(tmp_path, "big2.png", (1, 10, 10))]
    data = manifest(tmp_path, images)
    error = fit(data, tmp_path / "run", match="images of 3 different shapes (channels first)")
    for part in ("img0.png has shape (1, 8, 8) (first of 3 images), ",
                 "big.png has shape (1, 10, 10) (first of 2 images), ",
                 "wide.png has shape (1, 8, 12) (1 image); all images must match"):
        assert part in error
    assert "img1.png" not in error and "big2.png" not in error
    fails("transform", data, "--adapter", adapter_file(tmp_path, (1, 8, 8)),
          out=tmp_path / "s2t", match="wide.png has shape (1, 8, 12) (1 image)")


def test_channel_mismatch_between_source_and_target(tmp_path):
    grey = pngs(tmp_path, 2)
    rgb = [png(tmp_path, f"rgb{i}.png", (3, 8, 8)) for i in range(2)]
    data = manifest(tmp_path, [*grey, *rgb], sites=["A", "A", "B", "B"])
    fit(data, tmp_path / "run", match="rgb0.png has shape (3, 8, 8)")
    with pytest.raises(ValueError, match=r"rgb0\.png has shape \(3, 8, 8\)"):
        ImageDataset([tmp_path / name for name in (*grey, *rgb)])


def test_nan_or_inf_in_an_image_file(tmp_path):
    bad = np.zeros((6, 6, 6), np.float32)
    bad[1, 2, 3] = np.nan
    images = [nifti(tmp_path, f"v{i}.nii.gz") for i in range(3)]
    data = manifest(tmp_path, [*images, nifti(tmp_path, "nan.nii.gz", bad)])
    fit(data, tmp_path / "run", match="nan.nii.gz")
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match=r"inf\.nii\.gz.*(NaN|infinite)"):
        ImageDataset([tmp_path / nifti(tmp_path, "inf.nii.gz", bad)])[0]


def test_nan_or_inf_in_an_array(tmp_path):
    X = RNG.uniform(-1, 1, (6, 1, 8, 8)).astype(np.float32)
    bad = X.copy()
    bad[4, 0, 1, 1], bad[4, 0, 2, 2], bad[5, 0, 3, 3] = np.nan, np.inf, -np.inf
    domains = np.where(np.arange(6) < 3, 1, -2)
    for task in (TaskClassifier, TaskRegressor):
        with pytest.raises(ValueError, match=r"X holds 1 NaN and 2 infinite values \(3 "
                                             r"non-finite, in 2 row\(s\), the first row 4\)"):
            task(nf=2, max_epochs=1, batch_size=4).fit(bad, np.arange(6) % 2)
    fitted = TaskClassifier(nf=2, max_epochs=1, batch_size=4, random_state=0).fit(
        X, np.arange(6) % 2)
    with pytest.raises(ValueError, match="X holds 1 NaN and 2 infinite values"):
        fitted.predict(bad)
    with pytest.raises(ValueError, match=r"X holds 1 NaN and 2 infinite values \(3 "):
        ISTNAdapter(nf=2, max_epochs=1, batch_size=4).fit(bad, sample_domain=domains)
    adapter = ISTNAdapter(nf=2, max_epochs=1, batch_size=4, random_state=0).fit(
        X, sample_domain=domains)
    with pytest.raises(ValueError, match="X holds 1 NaN and 2 infinite values"):
        adapter.transform(bad)


def test_nan_voxels_in_a_nifti_are_counted_through_the_cli(tmp_path):
    bad = np.zeros((6, 6, 6), np.float32)
    bad[0, 0, :3], bad[1, 1, 1] = np.nan, np.inf
    images = [nifti(tmp_path, f"v{i}.nii.gz") for i in range(3)]
    data = manifest(tmp_path, [*images, nifti(tmp_path, "bad.nii.gz", bad)])
    fit(data, tmp_path / "run", match="bad.nii.gz: 3 NaN and 1 infinite values; images must "
                                      "be finite")
    fails("transform", data, "--adapter", adapter_file(tmp_path, (1, 6, 6, 6)),
          out=tmp_path / "s2t", match="bad.nii.gz: 3 NaN and 1 infinite values")


@pytest.mark.parametrize("role", ["source", "target"])
def test_a_domain_with_a_single_image(tmp_path, role):
    X = RNG.uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    domains = np.array([1, 1, 1, 1, -2]) if role == "target" else np.array([-2, 1, -2, -2, -2])
    row = 4 if role == "target" else 1
    with pytest.raises(ValueError, match=rf"the {role} domain has 1 image \(row {row}, as told "
                                         r"by sample_domain\); at least 2 images per domain"):
        ISTNAdapter(nf=2, max_epochs=1, batch_size=4).fit(X, sample_domain=domains)
    sites = ["A", "A", "A", "B"] if role == "target" else ["A", "B", "B", "B"]
    site = "B" if role == "target" else "A"
    fit(manifest(tmp_path, pngs(tmp_path), sites=sites), tmp_path / "run",
        match=f"the {role} site '{site}' has 1 image; at least 2 images per site are needed")


def test_two_images_per_domain_are_enough():
    X = RNG.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32)
    fitted = ISTNAdapter(nf=2, max_epochs=1, batch_size=4, random_state=0).fit(
        X, sample_domain=[1, 1, -2, -2])
    assert np.isfinite(fitted.transform(X[:1])).all()


def test_missing_file_in_a_manifest(tmp_path):
    data = manifest(tmp_path, [*pngs(tmp_path, 3), "gone.png"])
    fit(data, tmp_path / "run", match="1 image file(s) do not exist; first: ")


def test_garbage_nifti(tmp_path):
    (tmp_path / "garbage.nii.gz").write_bytes(b"this is not a NIfTI file at all" * 20)
    images = [nifti(tmp_path, f"v{i}.nii.gz") for i in range(3)]
    data = manifest(tmp_path, [*images, "garbage.nii.gz"])
    fit(data, tmp_path / "run", match="garbage.nii.gz")
    with pytest.raises(ValueError, match=r"garbage\.nii\.gz"):
        read_image(tmp_path / "garbage.nii.gz")


def test_truncated_nifti(tmp_path):
    images = [nifti(tmp_path, f"v{i}.nii.gz") for i in range(3)]
    whole = (tmp_path / images[0]).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])   # header lost
    (tmp_path / "end.nii.gz").write_bytes(whole[:-40])                # header kept, data cut
    for name in ("cut.nii.gz", "end.nii.gz"):
        data = manifest(tmp_path, [*images, name])
        fit(data, tmp_path / "run", match=f"{name}: not a readable NIfTI image")
        with pytest.raises(ValueError, match=f"{name}: not a readable NIfTI image"):
            read_image(tmp_path / name)


def test_label_column_missing(tmp_path):
    data = manifest(tmp_path, pngs(tmp_path), labels=[0, 1, 0, 1])
    fit(data, tmp_path / "run", "--model-type", "classifier", "--label-key", "lable",
        match="has no column 'lable'; columns: image, site, label (did you mean 'label'?)")
    fails("train-task", "--train-set", data, "--model-type", "classifier", "--label-key",
          "age", *TINY, out=tmp_path / "task", match="has no column 'age'")


def test_string_labels_for_a_regressor(tmp_path):
    data = manifest(tmp_path, pngs(tmp_path), labels=["cat", "dog", "cat", "dog"])
    fails("train-task", "--train-set", data, "--model-type", "regressor", "--label-key",
          "label", *TINY, out=tmp_path / "task", match="column 'label'")
    fit(data, tmp_path / "run", "--model-type", "regressor", "--label-key", "label",
        match="column 'label'")


@pytest.mark.parametrize(("extra", "match"), [
    (["--stn", "bsplin"], "unknown spatial_transformer stn='bsplin'"),
    (["--set", "gan_loss=hinge"], "unknown loss gan_loss='hinge'"),
])
def test_unknown_stn_or_loss_name(tmp_path, extra, match):
    fit(manifest(tmp_path, pngs(tmp_path)), tmp_path / "run", *extra, match=match)


def test_unknown_dataset_name(tmp_path):
    fails("fit", "--train-set", "morpho-mnst", *TINY, out=tmp_path / "run",
          match="did you mean 'morpho-mnist'?")


def test_cp_spacing_larger_than_the_image(tmp_path):
    fit(manifest(tmp_path, pngs(tmp_path)), tmp_path / "run", "--stn", "bspline",
        "--set", "cp_spacing=[16,16]", match="cp_spacing=(16, 16)")


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_max_displacement_outside_0_1(tmp_path, value):
    fit(manifest(tmp_path, pngs(tmp_path)), tmp_path / "run", "--set",
        f"max_displacement={value}", match="max_displacement must be in [0, 1]")


def test_output_folder_exists(tmp_path):
    data = manifest(tmp_path, pngs(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["fit", "--train-set", str(data), "--source-site", "A",
                                       "--target-site", "B", *TINY, "-o", str(tmp_path / "run")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "already exists and is not empty; pass --force" in result.output
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_a_failed_run_empties_the_empty_folder_it_was_given(tmp_path):
    (tmp_path / "run").mkdir()
    failed = CliRunner().invoke(main, ["fit", "--train-set", str(tmp_path / "none.tsv"),
                                       "-o", str(tmp_path / "run")])
    assert failed.exit_code != 0 and "is neither an existing manifest" in failed.output
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_in_a_read_only_folder(tmp_path):
    data = manifest(tmp_path, pngs(tmp_path))
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        fit(data, parent / "run", match="Permission denied")
    finally:
        parent.chmod(0o700)


def test_output_folder_that_cannot_be_created(tmp_path):
    # a regular file where a parent folder should be: no user, root included, can write there
    data = manifest(tmp_path, pngs(tmp_path))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    fit(data, blocker / "run", match="blocker")
    assert blocker.read_text() == "a file, not a folder"


def test_only_one_domain(tmp_path):
    data = manifest(tmp_path, pngs(tmp_path), sites=["A"] * 4)
    fit(data, tmp_path / "run", match="no rows of site 'B' in column 'site' (sites: ['A'])")
    fails("fit", "--train-set", data, "--source-site", "A", *TINY, out=tmp_path / "run2",
          match="choose --target-site among the sites ['A']")


@pytest.mark.parametrize("estimator", [ISTNAdapter, TaskClassifier, TaskRegressor])
def test_flattened_rows_need_an_image_shape(estimator):
    rows = RNG.uniform(-1, 1, (8, 36)).astype(np.float32)
    y, domains = np.arange(8) % 2, np.where(np.arange(8) < 4, 1, -2)
    tiny = estimator(nf=2, max_epochs=1, batch_size=4, random_state=0)
    with pytest.raises(ValueError, match=r"X is 2-D \(shape \(8, 36\)\).*pass image_shape="):
        tiny.fit(rows, y, sample_domain=domains)
    fitted = tiny.set_params(image_shape=(6, 6)).fit(rows, y, sample_domain=domains)
    fitted.set_params(image_shape=None)
    apply = fitted.transform if estimator is ISTNAdapter else fitted.predict
    with pytest.raises(ValueError, match="pass image_shape="):
        apply(rows)


@pytest.mark.parametrize(("text", "word", "line"), [
    ("source_site: no\n", "no", 2),
    ("stn: off\n", "off", 2),
    ("stn_options:\n  mode: Yes\n", "Yes", 3),
    ("train_where: [split, ON]\n", "ON", 2),
])
def test_yaml_boolean_words_for_text_are_refused(tmp_path, text, word, line):
    data = manifest(tmp_path, pngs(tmp_path))
    config = tmp_path / "config.yaml"
    config.write_text("nf: 2\n" + text)
    meaning = "true" if word.lower() in ("yes", "on") else "false"
    error = fit(data, tmp_path / "run", "--config", config,
                match=f"line {line}: YAML reads {word} as the boolean {meaning}")
    assert f'quote it ("{word}")' in error and "config.yaml" in error


def test_quoted_words_stay_text_and_true_false_stay_booleans(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text('source_site: "no"\nstn: \'off\'\nfinetune: true\nitn: False\n')
    assert read_config(config) == {"source_site": "no", "stn": "off", "finetune": True,
                                   "itn": False}


def test_a_manifest_listing_the_same_file_twice(tmp_path):
    images = pngs(tmp_path)
    data = manifest(tmp_path, [*images, f"./{images[0]}"], sites=["A", "B", "A", "B", "B"])
    fit(data, tmp_path / "run", match=f"rows 1 and 5 list the same image file (./{images[0]})")
    with pytest.raises(ValueError, match="rows 1 and 2 list the same image file"):
        files_manifest([tmp_path / images[1], tmp_path / images[1]])
    masked = pd.DataFrame({"image": images, "mask": [images[0]] * len(images)})
    masked.to_csv(tmp_path / "masked.tsv", sep="\t", index=False)
    assert len(read_manifest(tmp_path / "masked.tsv", mask_key="mask")) == len(images)


def _full_disk(limit):
    """For a child process: files larger than ``limit`` bytes fail to write with EFBIG."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return limit_file_size


def _no_temporaries(folder):
    return [path for path in folder.rglob("*") if path.name.startswith(".tmp-")]


SAVE_AGAIN = """
import sys
from istn_sk import load_model, save_model
save_model(load_model(sys.argv[1]), sys.argv[1], overwrite=True)
"""


def test_save_model_on_a_full_disk_keeps_the_earlier_file(tmp_path):
    X = RNG.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32)
    from istn_sk import save_model

    path = save_model(ISTNAdapter(nf=2, max_epochs=1, batch_size=4, random_state=0).fit(
        X, sample_domain=[1, 1, -2, -2]), tmp_path / "model.pt")
    earlier = path.read_bytes()
    done = subprocess.run([sys.executable, "-c", SAVE_AGAIN, str(path)], capture_output=True,
                          text=True, preexec_fn=_full_disk(len(earlier) // 2),
                          cwd=tempfile.gettempdir())
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("OSError: [Errno 27] could not write ") and str(path) in last
    assert last.endswith("File too large; model.pt was left as it was"), done.stderr
    assert path.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


CLI = "import sys; from istn_sk.cli.main import main; sys.argv[0] = 'istn-sk'; main()"


def test_cli_transform_on_a_full_disk(tmp_path):
    volumes = [nifti(tmp_path, f"v{i}.nii", RNG.uniform(-1, 1, (16, 16, 16)).astype(np.float32))
               for i in range(4)]
    data = manifest(tmp_path, volumes)
    assert CliRunner().invoke(main, ["fit", "--train-set", str(data), "--source-site", "A",
                                     "--target-site", "B", *TINY, "-o",
                                     str(tmp_path / "run")]).exit_code == 0
    adapter = tmp_path / "run" / "adapter.pt"
    transform = ["transform", str(data), "--where", "site=A", "--adapter", str(adapter)]
    assert CliRunner().invoke(main, [*transform, "-o", str(tmp_path / "earlier")]).exit_code == 0
    earlier = {path: path.read_bytes() for path in (tmp_path / "earlier").rglob("*")
               if path.is_file()}
    limit = min(os.path.getsize(tmp_path / name) for name in volumes) // 2
    for out, extra in ((tmp_path / "new", []), (tmp_path / "earlier", ["--force"])):
        done = subprocess.run([sys.executable, "-c", CLI, *transform, *extra, "-o", str(out)],
                              capture_output=True, text=True, preexec_fn=_full_disk(limit),
                              cwd=tempfile.gettempdir())
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, done.stderr
        assert "could not write " in errors[0] and "File too large" in errors[0], errors[0]
    assert not (tmp_path / "new").exists()
    assert _no_temporaries(tmp_path) == []
    for path, content in earlier.items():
        assert path.read_bytes() == content, f"{path} changed"
