"""MONAI interop: manifests as dict samples, MONAI pipelines feeding fit, ISTNTransformd."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

monai = pytest.importorskip("monai")

import monai.transforms as mt  # noqa: E402
from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from istn_sk import ISTNAdapter  # noqa: E402
from istn_sk.datasets import make_brain_sites  # noqa: E402
from istn_sk.io import SampleDataset, load_images, read_manifest  # noqa: E402
from istn_sk.monai import ISTNTransformd, load_samples, manifest_samples  # noqa: E402

SHAPE = (12, 12, 12)
KEYS = ["image", "mask"]
#: One image at a time and batches of adapter.batch_size differ by float rounding only.
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_brain_sites(tmp_path_factory.mktemp("brains"), n_per_site=3, shape=12)


@pytest.fixture(scope="module")
def samples(manifest):
    return manifest_samples(manifest, source="camcan", target="ukbb", label_key="sex",
                            mask_key="mask")


def loading(*, augment: bool, then: tuple = ()) -> mt.Compose:
    """LoadImaged ... ScaleIntensityd(-1, 1), a RandAffined or a crop to SHAPE, ``then``; seeded."""
    steps = [
        mt.LoadImaged(KEYS),
        mt.EnsureChannelFirstd(KEYS),
        mt.Orientationd(KEYS, axcodes="RAS", labels=None),
        mt.Spacingd(KEYS, pixdim=(16.0, 16.0, 16.0), mode=("bilinear", "nearest")),
        mt.MaskIntensityd("image", mask_key="mask"),
        mt.ScaleIntensityd("image", minv=-1.0, maxv=1.0),
    ]
    if augment:
        steps.append(mt.RandAffined(KEYS, prob=1.0, rotate_range=0.2, spatial_size=SHAPE,
                                    padding_mode="zeros", mode=("bilinear", "nearest")))
    else:
        steps.append(mt.ResizeWithPadOrCropd(KEYS, spatial_size=SHAPE))
    pipeline = mt.Compose([*steps, *then])
    pipeline.set_random_state(seed=0)
    return pipeline


@pytest.fixture(scope="module")
def fitted(samples):
    X, y, sample_domain = load_samples(samples, loading(augment=True))
    adapter = ISTNAdapter(nf=2, max_epochs=1, batch_size=2, random_state=0)
    return adapter.fit(X, y, sample_domain=sample_domain), X, y, sample_domain


@pytest.fixture(scope="module")
def plain(samples):
    """The samples through the deterministic pipeline, and their stacked images."""
    loaded = [loading(augment=False)(dict(sample)) for sample in samples]
    return loaded, np.stack([sample["image"].numpy() for sample in loaded])


def test_manifest_samples_hold_paths_domains_labels_and_columns(manifest, samples):
    table = read_manifest(manifest).table
    assert len(samples) == len(table) == 6
    for sample, row in zip(samples, table.itertuples(), strict=True):
        assert sample["image"].endswith(row.image) and sample["mask"].endswith(row.mask)
        assert sample["domain"] == (1 if row.site == "camcan" else -2)
        assert sample["label"] == row.sex and sample["age"] == row.age
        assert sample["site"] == row.site and sample["id"] == row.id
    only_source = manifest_samples(manifest, source=["camcan"])
    assert [s["domain"] for s in only_source] == [1, 1, 1, -2, -2, -2]
    assert only_source[0]["mask"] == table["mask"][0]  # without mask_key: a plain column
    assert "domain" not in manifest_samples(manifest)[0]
    assert len(manifest_samples(manifest, source="camcan", target="elsewhere")) == 3
    with pytest.raises(ValueError, match="both source and target"):
        manifest_samples(manifest, source="camcan", target=["camcan", "ukbb"])
    with pytest.raises(ValueError, match="did you mean 'site'"):
        manifest_samples(manifest, source="camcan", site_key="sites")


def test_monai_pipeline_feeds_fit(fitted):
    adapter, X, y, sample_domain = fitted
    assert X.shape == (6, 1, *SHAPE) and X.dtype == np.float32
    assert X.min() >= -1.0 and X.max() <= 1.0
    assert sample_domain.tolist() == [1, 1, 1, -2, -2, -2] and list(y) == ["F", "M", "F",
                                                                            "M", "F", "F"]
    assert len(adapter.history_) == 1 and adapter.image_shape_ == SHAPE
    again, no_y, no_domain = load_samples([{"image": torch.from_numpy(x)} for x in X])
    np.testing.assert_array_equal(again, X)
    assert no_y is None and no_domain is None


def test_seeded_augmentation_is_reproducible(samples):
    first = load_samples(samples[:2], loading(augment=True))[0]
    second = load_samples(samples[:2], loading(augment=True))[0]
    np.testing.assert_array_equal(first, second)


def test_sample_dataset_reads_like_image_dataset(samples, plain):
    dataset = SampleDataset(samples, loading(augment=False))
    np.testing.assert_array_equal(load_images(dataset, batch_size=4), plain[1])
    assert dataset.sample(0)["domain"] == 1 and isinstance(dataset.sample(0)["image"],
                                                           MetaTensor)
    with pytest.raises(KeyError, match="no key 'img' after the transform"):
        SampleDataset(samples, loading(augment=False), image_key="img")[0]
    with pytest.raises(ValueError, match=r"sample 0 \('image'\): 4 NaN"):
        SampleDataset([{"image": np.full((1, 2, 2), np.nan)}])[0]
    with pytest.raises(ValueError, match="all images must match"):
        load_samples([{"image": np.zeros((1, 4, 4, 4))}, {"image": np.zeros((1, 4, 4, 5))}])


def test_transformd_in_compose_equals_adapter_transform(fitted, samples):
    adapter = fitted[0]
    to_target = loading(augment=True, then=(ISTNTransformd("image", adapter),))
    mapped = [to_target(dict(sample)) for sample in samples]
    inputs, _, _ = load_samples(samples, loading(augment=True))
    expected = adapter.transform(inputs)
    np.testing.assert_allclose(np.stack([m["image"].numpy() for m in mapped]), expected,
                               **TOL)
    assert not np.allclose(expected, inputs)


def test_transformd_keeps_meta_type_and_dtype(fitted, plain):
    adapter, (loaded, X) = fitted[0], plain
    image = loaded[0]["image"]
    out = ISTNTransformd("image", adapter)({"image": image, "other": 3})
    assert isinstance(out["image"], MetaTensor) and out["other"] == 3
    torch.testing.assert_close(out["image"].affine, image.affine)
    assert out["image"].meta["filename_or_obj"] == image.meta["filename_or_obj"]
    np.testing.assert_allclose(out["image"].numpy(), adapter.transform(X[:1])[0], **TOL)
    as_numpy = ISTNTransformd("image", adapter)({"image": X[0].astype(np.float64)})["image"]
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float64
    np.testing.assert_allclose(as_numpy, adapter.transform(X[:1])[0], **TOL)


def test_transformd_input_range_and_domain_key(fitted, plain):
    adapter, X = fitted[0], plain[1]
    unit = (X[:2] + 1.0) / 2.0
    out = ISTNTransformd("image", adapter, input_range=(0.0, 1.0))({"image": unit})["image"]
    np.testing.assert_allclose(out, (adapter.transform(X[:2]) + 1.0) / 2.0, **TOL)
    with pytest.warns(UserWarning, match="leaves input_range"):
        ISTNTransformd("image", adapter)({"image": unit * 4.0})
    kept = ISTNTransformd("image", adapter, domain_key="domain")({"image": X[3], "domain": -2})
    np.testing.assert_array_equal(kept["image"], X[3])


def test_transformd_rejects_unfitted_adapter_wrong_key_and_shape(fitted, plain):
    adapter, X = fitted[0], plain[1]
    with pytest.raises(NotFittedError, match="needs a fitted ISTNAdapter"):
        ISTNTransformd("image", ISTNAdapter())
    with pytest.raises(TypeError, match="must be a fitted ISTNAdapter"):
        ISTNTransformd("image", object())
    with pytest.raises(ValueError, match="direction must be one of"):
        ISTNTransformd("image", adapter, direction="t2s")
    wrong_key = ISTNTransformd("img", adapter)
    with pytest.raises(KeyError, match="no key 'img' in the sample"):
        wrong_key({"image": X[0]})
    with pytest.raises(RuntimeError) as raised:
        mt.Compose([wrong_key])({"image": X[0]})
    assert isinstance(raised.value.__cause__, KeyError)
    skipped = ISTNTransformd("img", adapter, allow_missing_keys=True)({"image": X[0]})
    np.testing.assert_array_equal(skipped["image"], X[0])
    with pytest.raises(ValueError, match=r"fitted on images of shape .* = \(1, 12, 12, 12\)"):
        ISTNTransformd("image", adapter)({"image": X[0, :, :8]})
    with pytest.raises(ValueError, match="channel-first"):
        ISTNTransformd("image", adapter)({"image": X[0, 0, 0]})


def test_transformd_through_monai_dataloader(fitted, samples, plain):
    adapter, X = fitted[0], plain[1]
    sample_domain = np.array([sample["domain"] for sample in samples])
    pipeline = loading(augment=False,
                       then=(ISTNTransformd("image", adapter, domain_key="domain"),))
    batches = list(DataLoader(Dataset(samples, pipeline), batch_size=4, num_workers=0))
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    assert isinstance(batches[0]["image"], MetaTensor) and batches[0]["image"].is_batch
    assert batches[0]["image"].affine.shape == (4, 4, 4)
    images = np.concatenate([b["image"].numpy() for b in batches])
    np.testing.assert_allclose(images, adapter.transform(X, sample_domain), **TOL)
    np.testing.assert_array_equal(images[3:], X[3:])
    # on collated batches, e.g. on the GPU in a training loop
    loaded = next(iter(DataLoader(Dataset(samples, loading(augment=False)), batch_size=6)))
    batch = ISTNTransformd("image", adapter, domain_key="domain")(loaded)
    np.testing.assert_allclose(batch["image"].numpy(), adapter.transform(X, sample_domain),
                               **TOL)
    torch.testing.assert_close(batch["image"].affine, loaded["image"].affine)


def test_istn_sk_imports_without_monai():
    code = ("import sys; import istn_sk, istn_sk.io; assert 'monai' not in sys.modules\n"
            "sys.modules['monai'] = None\n"
            "try:\n    import istn_sk.monai\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert 'pip install "istn-sk[monai]"' in result.stdout
