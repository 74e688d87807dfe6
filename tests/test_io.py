"""istn_sk.io: PNG/NIfTI reading and writing, manifests, the lazy Dataset, configs.

Every other image kind and format is tested in test_io_formats.py.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from istn_sk.io import (
    ImageDataset,
    Normalizer,
    canonical_config,
    files_manifest,
    image_shape,
    iter_batches,
    load_images,
    parse_value,
    read_config,
    read_image,
    read_manifest,
    write_displacement,
    write_image,
)


def test_png_reads_pillow_files_in_minus_one_to_one(tmp_path):
    pixels = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.shape == (1, 64, 48) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], pixels / 255 * 2 - 1, atol=1e-6)


def test_png_round_trip_is_8_bit(tmp_path):
    image = np.linspace(-1, 1, 3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)
    write_image(tmp_path / "rgb.png", image)
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), image, atol=1 / 255)
    with pytest.raises(ValueError, match="PNG needs"):
        write_image(tmp_path / "bad.png", np.zeros((1, 4, 4, 4)))


def _nifti(path, data, affine):
    image = nib.Nifti1Image(data.astype(np.float32), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=4)
    image.header["descrip"] = b"istn-sk test"
    nib.save(image, path)
    return path


AFFINE = np.array([[2.0, 0, 0, -10], [0, 1.5, 0, 4], [0, 0, 3, 7], [0, 0, 0, 1]])


def test_nifti_round_trip_keeps_affine_header_and_codes(tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    source = _nifti(tmp_path / "in.nii.gz", data, AFFINE)
    image = read_image(source)
    assert image.shape == (1, 6, 5, 4) and image_shape(source) == (1, 6, 5, 4)
    np.testing.assert_array_equal(image[0], data)
    out = write_image(tmp_path / "out.nii.gz", image * 2, like=source)
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, AFFINE)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 4
    assert written.header["descrip"].tobytes().startswith(b"istn-sk test")
    np.testing.assert_allclose(np.asarray(written.dataobj), data * 2, rtol=1e-6)


def test_nifti_channels_last_and_displacement_vectors(tmp_path):
    data = np.random.default_rng(1).normal(size=(4, 4, 3, 2)).astype(np.float32)
    source = _nifti(tmp_path / "c.nii", data, AFFINE)
    image = read_image(source)
    assert image.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(image[1], data[..., 1])
    field = np.random.default_rng(2).normal(size=(3, 4, 4, 3)).astype(np.float32)
    vector = nib.load(write_displacement(tmp_path / "d.nii.gz", field, like=source))
    assert vector.shape == (4, 4, 3, 1, 3) and vector.header.get_intent()[0] == "vector"
    np.testing.assert_allclose(vector.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(vector.dataobj)[..., 0, 2], field[2])
    flat = write_displacement(tmp_path / "d.npy", field[:2, :, :, 0])
    np.testing.assert_array_equal(np.load(flat), field[:2, :, :, 0])


def test_normalizer_tanh_inverts_and_rejects_unknown_names():
    values = np.array([-2.0, 0.0, 0.5, 3.0])
    tanh = Normalizer("tanh")
    np.testing.assert_allclose(tanh.inverse(tanh(values)), values, rtol=1e-5)
    assert np.isfinite(tanh.inverse(np.array([-1.0, 1.0]))).all()
    with pytest.raises(ValueError, match="normalizer must be one of"):
        Normalizer("zscore")


@pytest.fixture
def png_folder(tmp_path):
    rng = np.random.default_rng(0)
    for site in ("A", "B"):
        (tmp_path / site).mkdir()
        for i in range(3):
            write_image(tmp_path / site / f"{i}.png", rng.uniform(-1, 1, (1, 6, 5)))
    return tmp_path


def test_manifest_from_tsv_csv_and_folder(png_folder):
    table = pd.DataFrame({"image": ["A/0.png", "B/1.png"], "label": [1, 0], "site": ["A", "B"]})
    table.to_csv(png_folder / "list.csv", index=False)
    table.to_csv(png_folder / "list.tsv", sep="\t", index=False)
    for name in ("list.csv", "list.tsv"):
        manifest = read_manifest(png_folder / name)
        assert manifest.paths == [png_folder / "A/0.png", png_folder / "B/1.png"]
        assert manifest.where({"site": "B"}).column("label").tolist() == [0]
        assert manifest.relative_outputs() == ["A/0", "B/1"]
    folder = read_manifest(png_folder)
    assert folder.table["site"].tolist() == ["A"] * 3 + ["B"] * 3
    assert folder.where({"site": ["A", "B"]}).table.shape[0] == 6
    given = files_manifest([png_folder / "A/0.png", png_folder / "B/2.png"])
    assert given.relative_outputs() == ["0", "2"]


def test_manifest_errors_name_the_problem(png_folder):
    pd.DataFrame({"image": ["A/0.png", "A/9.png"]}).to_csv(png_folder / "m.tsv", sep="\t",
                                                          index=False)
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) do not exist.*A/9.png"):
        read_manifest(png_folder / "m.tsv")
    with pytest.raises(ValueError, match=r"no column 'imag'.*did you mean 'image'"):
        read_manifest(png_folder / "m.tsv", image_key="imag", check_files=False)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        read_manifest(png_folder / "absent.tsv")


def test_image_dataset_is_lazy_masks_normalizes_and_checks_shapes(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 4, 4, 4)).astype(np.float32)
    paths = [_nifti(tmp_path / f"{i}.nii.gz", data[i], AFFINE) for i in range(3)]
    mask = np.ones((4, 4, 4), np.float32)
    mask[0] = 0
    masks = [_nifti(tmp_path / "mask.nii.gz", mask, AFFINE)] * 3
    dataset = ImageDataset(paths, masks=masks, normalizer="tanh")
    paths[1].unlink()  # nothing was read up front but headers: item 0 still loads
    image, index = dataset[0]
    assert index == 0 and tuple(image.shape) == (1, 4, 4, 4)
    np.testing.assert_allclose(image[0, 1:].numpy(), np.tanh(data[0, 1:]), rtol=1e-6)
    assert float(image[0, 0].abs().max()) == 0.0
    _nifti(paths[1], data[1], AFFINE)
    stacked = load_images(dataset, batch_size=2)
    assert stacked.shape == (3, 1, 4, 4, 4)
    ordered = [indices.tolist() for _, indices in iter_batches(dataset, batch_size=2,
                                                               num_workers=1)]
    assert ordered == [[0, 1], [2]]
    _nifti(tmp_path / "odd.nii.gz", np.zeros((4, 4, 5)), AFFINE)
    with pytest.raises(ValueError, match="all images must match"):
        ImageDataset([paths[0], tmp_path / "odd.nii.gz"])


def test_config_files_aliases_and_suggestions(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"learning_rate": 0.01, "stn": "None"}))
    (tmp_path / "c.yaml").write_text("epochs: 3\ncp_spacing: [4, 4]\n")
    known = {"lr", "stn", "max_epochs", "cp_spacing"}
    assert canonical_config(read_config(tmp_path / "c.json"), known, origin="c") == {
        "lr": 0.01, "stn": "none"}
    assert canonical_config(read_config(tmp_path / "c.yaml"), known, origin="c") == {
        "max_epochs": 3, "cp_spacing": [4, 4]}
    with pytest.raises(ValueError, match=r"'lernin_rate'.*did you mean 'learning_rate'"):
        canonical_config({"lernin_rate": 1}, known, origin="c")
    with pytest.raises(ValueError, match="'itn_path' and 'stn_path' both set 'adapter'"):
        canonical_config({"itn_path": "a.pt", "stn_path": "b.pt"}, known, origin="c")
    assert canonical_config({"task__nf": 4}, known, origin="c", prefixes=["task__"]) == {
        "task__nf": 4}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="one mapping"):
        read_config(tmp_path / "list.yaml")
    assert [parse_value(text) for text in ("4", "1e-4", "[8, 8]", "true", "bspline", "[A, B]")] \
        == [4, 1e-4, [8, 8], True, "bspline", ["A", "B"]]
