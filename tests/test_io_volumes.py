"""istn_sk.io volumes with their geometry: MGZ, NRRD/MetaImage, DICOM series; RAS+ and resampling.

NRRD and MetaImage files are made by SimpleITK and DICOM slices by pydicom
(the ``sitk`` and ``dicom`` extras, installed by the ``test`` extra); the
expected affines come from the libraries' own index-to-world mappings,
converted from their LPS+ world to NIfTI's RAS+ here.
"""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from istn_sk.io import (
    Geometry,
    ImageDataset,
    harmonise_geometry,
    image_shape,
    read_image,
    read_manifest,
    read_volume,
    volume_header,
    write_image,
)

RNG = np.random.default_rng(0)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def world(affine, index):
    """RAS+ world point of a voxel index."""
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


# --------------------------------------------------------------------------- MGZ


def test_mgz_round_trip_keeps_array_and_affine(tmp_path):
    image = RNG.normal(size=(1, 6, 5, 4)).astype(np.float32)
    affine = np.array([[0, 0, 1.5, -20], [-2.0, 0, 0, 30], [0, 1.0, 0, 5], [0, 0, 0, 1]])
    path = write_image(tmp_path / "a.mgz", image, affine=affine)
    read, read_affine = read_volume(path)
    np.testing.assert_array_equal(read, image)
    np.testing.assert_allclose(read_affine, affine, atol=1e-5)
    np.testing.assert_allclose(nib.load(path).affine, affine, atol=1e-5)
    shape, header_affine = volume_header(path)
    assert shape == image_shape(path) == image.shape
    np.testing.assert_allclose(header_affine, affine, atol=1e-5)
    # an MGZ lends its geometry to a NIfTI output
    out = write_image(tmp_path / "b.nii.gz", image, like=path)
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-5)


# --------------------------------------------------------------------------- NRRD / MetaImage


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_sitk_files_read_with_their_geometry_in_ras(tmp_path, suffix):
    sitk = pytest.importorskip("SimpleITK")
    samples = RNG.normal(size=(5, 4, 3)).astype(np.float32)          # (x, y, z)
    itk = sitk.GetImageFromArray(samples.transpose(2, 1, 0))         # sitk: (z, y, x)
    itk.SetSpacing((0.5, 1.5, 2.0))
    itk.SetOrigin((10.0, -20.0, 30.0))
    itk.SetDirection((0, 1, 0,  -1, 0, 0,  0, 0, 1))                # a rotation about z
    path = tmp_path / f"a{suffix}"
    sitk.WriteImage(itk, str(path))
    image, affine = read_volume(path)
    np.testing.assert_array_equal(image, samples[None])
    assert read_image(path).shape == image_shape(path) == (1, 5, 4, 3)
    for index in [(0, 0, 0), (4, 0, 0), (1, 3, 2), (4, 3, 2)]:
        lps = itk.TransformIndexToPhysicalPoint(index)
        np.testing.assert_allclose(world(affine, index), LPS_TO_RAS @ lps, atol=1e-9)
    np.testing.assert_allclose(volume_header(path)[1], affine)
    # written back (any of the formats) with the same geometry
    again = write_image(tmp_path / f"b{suffix}", image, like=path)
    read_again, affine_again = read_volume(again)
    np.testing.assert_array_equal(read_again, image)
    np.testing.assert_allclose(affine_again, affine, atol=1e-9)
    nifti = write_image(tmp_path / "c.nii.gz", image, like=path)
    np.testing.assert_allclose(nib.load(nifti).affine, affine, atol=1e-5)


def test_sitk_vector_images_are_channels_first(tmp_path):
    pytest.importorskip("SimpleITK")
    image = RNG.normal(size=(2, 4, 3, 5)).astype(np.float32)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    path = write_image(tmp_path / "v.nrrd", image, affine=affine)
    read, read_affine = read_volume(path)
    np.testing.assert_array_equal(read, image)
    np.testing.assert_allclose(read_affine, affine)


# --------------------------------------------------------------------------- DICOM

ROW_DIRECTION = np.array([0.0, 1.0, 0.0])          # sagittal slices
COLUMN_DIRECTION = np.array([0.0, 0.0, -1.0])
PIXEL_SPACING = (0.8, 0.6)                          # between rows, between columns
SLOPE, INTERCEPT = 0.5, -100.0


def write_slice(path, pixels, position, *, series_uid, instance, slope=SLOPE,
                intercept=INTERCEPT, drop=()):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [*map(float, ROW_DIRECTION), *map(float, COLUMN_DIRECTION)]
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = 2.0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    for name in drop:
        delattr(ds, name)
    try:
        ds.save_as(path, enforce_file_format=True)             # pydicom 3
    except TypeError:                                          # pydicom 2.4
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def dicom_series(folder, n=4, *, series_uid="1.2.3.4", drop=()):
    """``n`` slices 2 mm apart along the normal, written in shuffled order; their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(ROW_DIRECTION, COLUMN_DIRECTION)        # (-1, 0, 0)
    slices = []
    for k, name in enumerate(RNG.permutation(n)):
        position = np.array([5.0, -12.0, 40.0]) + normal * 2.0 * name
        pixels = RNG.integers(0, 4000, (3, 5), dtype=np.uint16)   # 3 rows, 5 columns
        slope = SLOPE if k else 2.0                               # one slice rescaled its own way
        write_slice(folder / f"IM{k:04d}.dcm", pixels, position, series_uid=series_uid,
                    instance=n - k, slope=slope, drop=drop)
        slices.append((position, pixels.astype(float) * slope + INTERCEPT))
    return slices


def test_dicom_series_is_one_volume_sorted_along_the_normal(tmp_path):
    pytest.importorskip("pydicom")
    slices = dicom_series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    image, affine = read_volume(tmp_path / "series")
    assert image.shape == image_shape(tmp_path / "series") == (1, 5, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [0.6, 0.8, 2.0])
    inverse = np.linalg.inv(affine)
    order = []
    for position, values in slices:
        for r in range(3):
            for c in range(5):
                lps = position + c * PIXEL_SPACING[1] * ROW_DIRECTION \
                    + r * PIXEL_SPACING[0] * COLUMN_DIRECTION
                index = inverse[:3, :3] @ (LPS_TO_RAS @ lps) + inverse[:3, 3]
                np.testing.assert_allclose(index, np.round(index), atol=1e-6)
                i, j, k = np.round(index).astype(int)
                assert (i, j) == (c, r)
                assert image[0, i, j, k] == pytest.approx(values[r, c])
        order.append((np.cross(ROW_DIRECTION, COLUMN_DIRECTION) @ position, k))
    assert [k for _, k in sorted(order)] == [0, 1, 2, 3]
    # a NIfTI output keeps the series' geometry
    out = write_image(tmp_path / "out.nii.gz", image, like=tmp_path / "series")
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-4)


def test_dicom_folder_of_two_series_or_without_geometry_is_refused(tmp_path):
    pytest.importorskip("pydicom")
    dicom_series(tmp_path / "mixed", 2, series_uid="1.2.3.4")
    dicom_series(tmp_path / "other", 2, series_uid="1.2.3.5")
    for k in range(2):
        (tmp_path / "other" / f"IM{k:04d}.dcm").rename(tmp_path / "mixed" / f"B{k}.dcm")
    with pytest.raises(ValueError, match=r"DICOM files of 2 series \(1\.2\.3\.5: 2 files.*"
                                         r"1\.2\.3\.4: 2 files.*folder of its own"):
        read_image(tmp_path / "mixed")
    dicom_series(tmp_path / "bare", 2, drop=("ImagePositionPatient",))
    with pytest.raises(ValueError, match="without ImagePositionPatient"):
        read_volume(tmp_path / "bare")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM files"):
        read_image(tmp_path / "empty")


def test_manifests_and_folders_list_dicom_series(tmp_path):
    pytest.importorskip("pydicom")
    dicom_series(tmp_path / "data" / "A" / "sub-01")
    (tmp_path / "data" / "B").mkdir()
    write_image(tmp_path / "data" / "B" / "sub-02.nii.gz", np.zeros((1, 5, 3, 4), np.float32))
    manifest = read_manifest(tmp_path / "data")
    assert manifest.table["image"].tolist() == ["A/sub-01", "B/sub-02.nii.gz"]
    assert manifest.table["site"].tolist() == ["A", "B"]
    assert manifest.relative_outputs() == ["A/sub-01", "B/sub-02"]
    assert manifest.dataset().shape == (1, 5, 3, 4)
    pd.DataFrame({"image": ["data/A/sub-01/"]}).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    listed = read_manifest(tmp_path / "m.tsv")
    assert listed.relative_outputs() == ["data/A/sub-01"]
    one = read_manifest(tmp_path / "data" / "A" / "sub-01")       # a series folder alone
    assert one.table["image"].tolist() == ["sub-01"] and len(one.dataset()) == 1


def test_missing_extras_name_their_install_line(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    dicom_series(tmp_path / "series", 2)
    (tmp_path / "a.nrrd").write_bytes(b"NRRD0004\n")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(ImportError, match=r'pip install "istn-sk\[dicom\]"'):
        read_image(tmp_path / "series")
    with pytest.raises(ImportError, match=r'pip install "istn-sk\[sitk\]"'):
        read_image(tmp_path / "a.nrrd")


def test_import_and_help_do_not_import_the_extras(tmp_path):
    code = ("import sys, istn_sk, istn_sk.io\n"
            "from istn_sk.io import read_image, read_manifest, harmonise_geometry\n"
            "from click.testing import CliRunner\n"
            "from istn_sk.cli.main import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "print([m for m in ('pydicom', 'SimpleITK') if m in sys.modules])\n")
    # from a neutral folder: the installed package, not the source tree in the current folder
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}, cwd=tmp_path)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- geometry


def canonical(image, affine):
    """nibabel's own answer: ``as_closest_canonical`` of a channels-last image."""
    reoriented = nib.as_closest_canonical(nib.Nifti1Image(np.moveaxis(image, 0, -1), affine))
    return np.moveaxis(np.asarray(reoriented.dataobj), -1, 0), reoriented.affine


@pytest.mark.parametrize("codes, affine", [
    ("LPS", np.array([[-2.0, 0, 0, 20], [0, -2, 0, 30], [0, 0, 2, -5], [0, 0, 0, 1]])),
    ("LAS", np.array([[-1.0, 0, 0, 9], [0, 1.5, 0, -4], [0, 0, 3, 7], [0, 0, 0, 1]])),
    ("ASL", np.array([[0, 0, -2.0, 1], [1.0, 0, 0, 2], [0, 3.0, 0, 3], [0, 0, 0, 1]])),
])
def test_reorientation_to_ras_flips_the_array_and_keeps_the_world(codes, affine):
    image = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    out, out_affine, record = harmonise_geometry(image, affine)
    expected, expected_affine = canonical(image, affine)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out_affine, expected_affine)
    assert "".join(nib.aff2axcodes(out_affine)) == "RAS"
    if codes == "LPS":
        np.testing.assert_array_equal(out, image[:, ::-1, ::-1, :])
    assert record["original_orientation"] == codes and record["orientation"] == "RAS"
    assert record["reoriented"] and not record["resampled"]
    assert record["original_shape"] == [4, 5, 6]
    assert record["summary"] == f"reoriented {codes} -> RAS"
    # every value keeps its place in the world
    for index in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        moved = np.round(np.linalg.solve(out_affine[:3, :3],
                                         world(affine, index) - out_affine[:3, 3])).astype(int)
        assert out[(0, *moved)] == image[(0, *index)]


def test_resampling_2mm_to_1mm_doubles_the_shape_and_keeps_the_world():
    affine = np.array([[2.0, 0, 0, -8], [0, 2, 0, 4], [0, 0, 2, 10], [0, 0, 0, 1]])
    image = np.zeros((1, 8, 8, 8), np.float32)
    image[0, 3, 4, 5] = 1.0
    out, out_affine, record = harmonise_geometry(image, affine, voxel_size=1.0)
    assert out.shape == (1, 16, 16, 16)
    np.testing.assert_allclose(np.linalg.norm(out_affine[:3, :3], axis=0), 1.0)
    marker = world(affine, (3, 4, 5))
    peak = np.unravel_index(np.argmax(out[0]), out.shape[1:])
    assert np.all(np.abs(world(out_affine, peak) - marker) <= 1.0)    # half a 2 mm voxel
    weights = out[0] / out[0].sum()
    centre = np.array([np.sum(weights * grid) for grid in np.indices(out.shape[1:])])
    np.testing.assert_allclose(world(out_affine, centre), marker, atol=1e-5)
    # the same field of view: both grids' boxes have the same corners
    np.testing.assert_allclose(world(out_affine, (-0.5,) * 3), world(affine, (-0.5,) * 3))
    np.testing.assert_allclose(world(out_affine, (15.5,) * 3), world(affine, (7.5,) * 3))
    assert record["resampled"] and record["interpolation"] == "linear"
    assert record["original_voxel_size"] == [2.0, 2.0, 2.0] and record["shape"] == [16] * 3
    assert "2x2x2 mm (8, 8, 8) -> 1x1x1 mm (16, 16, 16)" in record["summary"]


def test_resampling_a_linear_ramp_is_exact_in_world_coordinates():
    affine = np.array([[0, 0, 2.0, -3], [-1.5, 0, 0, 7], [0, 2.5, 0, 1], [0, 0, 0, 1]])
    grid = np.indices((6, 7, 5)).reshape(3, -1)
    points = affine[:3, :3] @ grid + affine[:3, 3:]
    slope = np.array([0.3, -0.2, 0.7])
    image = (slope @ points).reshape(1, 6, 7, 5).astype(np.float64)
    out, out_affine, _ = harmonise_geometry(image, affine, voxel_size=(1.0, 1.25, 0.8))
    new_grid = np.indices(out.shape[1:]).reshape(3, -1)
    new_points = out_affine[:3, :3] @ new_grid + out_affine[:3, 3:]
    inside = np.all((np.linalg.inv(affine)[:3, :3] @ new_points
                     + np.linalg.inv(affine)[:3, 3:] >= 0)
                    & (np.linalg.inv(affine)[:3, :3] @ new_points
                       + np.linalg.inv(affine)[:3, 3:] <= np.array([[5], [6], [4]])), axis=0)
    assert inside.sum() > 100
    np.testing.assert_allclose(out[0].ravel()[inside], (slope @ new_points)[inside], atol=1e-9)


def test_masks_resample_by_nearest_neighbour():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = (RNG.random((1, 6, 6, 6)) > 0.5).astype(np.float32)
    out, _, record = harmonise_geometry(mask, affine, voxel_size=1.3, interpolation="nearest")
    assert set(np.unique(out)) == {0.0, 1.0} and record["interpolation"] == "nearest"
    linear, _, _ = harmonise_geometry(mask, affine, voxel_size=1.3)
    assert len(np.unique(linear)) > 2


def test_shape_alone_crops_and_pads_by_whole_voxels():
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    image = RNG.normal(size=(1, 8, 8, 8)).astype(np.float32)
    out, out_affine, record = harmonise_geometry(image, affine, reorient=False,
                                                 out_shape=(10, 6, 8))
    np.testing.assert_array_equal(out[0, 1:9, :, :], image[0, :, 1:7, :])
    assert not out[0, 0].any() and not out[0, 9].any()
    np.testing.assert_allclose(world(out_affine, (1, 0, 0)), world(affine, (0, 1, 0)))
    assert "cropped/padded by whole voxels" in record["summary"]


def test_geometry_is_off_by_default_and_checks_its_options(tmp_path):
    image = RNG.normal(size=(1, 4, 5, 6)).astype(np.float32)
    lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    path = write_image(tmp_path / "a.nii.gz", image, affine=lps)
    dataset = ImageDataset([path])
    assert dataset.geometry is None and dataset.geometry_records is None
    np.testing.assert_array_equal(dataset[0][0].numpy(), image)
    read, affine = read_volume(path)
    np.testing.assert_array_equal(read, image)
    np.testing.assert_allclose(affine, lps)
    assert not Geometry(reorient=False).active
    same, _, record = harmonise_geometry(image, np.eye(4))
    np.testing.assert_array_equal(same, image)
    assert record["summary"] == "geometry unchanged"
    with pytest.raises(ValueError, match="voxel_size must be"):
        Geometry(voxel_size=(1, 2))
    with pytest.raises(ValueError, match=r"needs a \(C, X, Y, Z\) volume"):
        harmonise_geometry(image[:, :, :, 0], np.eye(4))


def test_dataset_puts_two_sites_on_one_grid(tmp_path):
    ras = np.array([[1.0, 0, 0, -4], [0, 1, 0, -4], [0, 0, 1, -4], [0, 0, 0, 1]])
    lps = np.array([[-2.0, 0, 0, 2.5], [0, -2, 0, 2.5], [0, 0, 2, -3.5], [0, 0, 0, 1]])
    fine = RNG.normal(size=(1, 8, 8, 8)).astype(np.float32)
    coarse = RNG.normal(size=(1, 4, 4, 4)).astype(np.float32)
    paths = [write_image(tmp_path / "a.nii.gz", fine, affine=ras),
             write_image(tmp_path / "b.nii.gz", coarse, affine=lps)]
    masks = [write_image(tmp_path / "ma.nii.gz", np.ones_like(fine), affine=ras),
             write_image(tmp_path / "mb.nii.gz", np.ones_like(coarse), affine=lps)]
    with pytest.raises(ValueError, match="different shapes"):
        ImageDataset(paths)
    dataset = ImageDataset(paths, masks=masks, reorient=True, voxel_size=1.0)
    assert dataset.shape == (1, 8, 8, 8)
    first, second = dataset.geometry_records
    assert first["summary"] == "geometry unchanged"
    assert second["original_orientation"] == "LPS" and second["reoriented"]
    np.testing.assert_allclose(second["affine"], ras, atol=1e-9)
    np.testing.assert_array_equal(dataset[0][0].numpy(), fine)
    expected, _, _ = harmonise_geometry(coarse, lps, voxel_size=1.0)
    np.testing.assert_allclose(dataset[1][0].numpy(), expected, atol=1e-6)
