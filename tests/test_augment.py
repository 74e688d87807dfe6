"""Augmentation policies: what they do to a batch, seeding, and where they apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from istn_sk import ISTNAdapter, PluginError, TaskClassifier, make_shifted_shapes
from istn_sk._augment import RandomShiftFlip, get_augmentation


def _impulses(n: int, spatial: tuple[int, ...]) -> torch.Tensor:
    images = -torch.ones(n, 1, *spatial)
    images[(slice(None), 0, *[s // 2 for s in spatial])] = 1.0
    return images


@pytest.mark.parametrize("spatial", [(16, 16), (12, 12, 12)])
def test_shift_moves_each_image_by_at_most_three_voxels_and_fills_background(spatial):
    torch.manual_seed(0)
    images = _impulses(200, spatial)
    out = RandomShiftFlip(max_shift=3, p_shift=1.0, p_flip=0.0)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out.amax(dim=tuple(range(1, out.ndim))), torch.ones(200))
    centre = np.array([s // 2 for s in spatial])
    offsets = np.stack([np.argwhere(image[0].numpy() == 1)[0] - centre for image in out])
    assert offsets.min() == -3 and offsets.max() == 3            # the whole range is drawn
    assert set(np.unique(out.numpy())) == {-1.0, 1.0}            # border at the background
    assert np.mean(np.all(offsets == 0, axis=1)) < 0.1


def test_each_part_applies_with_its_probability_and_flip_is_the_last_axis():
    torch.manual_seed(1)
    images = torch.arange(2000 * 8, dtype=torch.float32).reshape(2000, 1, 1, 8)
    flipped = RandomShiftFlip(max_shift=3, p_shift=0.0, p_flip=0.5)(images)
    is_flipped = torch.all(flipped == images.flip(-1), dim=-1).flatten()
    kept = torch.all(flipped == images, dim=-1).flatten()
    assert torch.all(is_flipped | kept) and abs(is_flipped.float().mean() - 0.5) < 0.04
    shapes = _impulses(2000, (16, 16))
    moved = RandomShiftFlip(max_shift=3, p_shift=0.5, p_flip=0.0)(shapes)
    changed = (moved != shapes).flatten(1).any(1).float().mean()
    assert 0.40 < changed < 0.50     # 0.5 x (1 - 1/49 offsets that are zero)
    assert torch.equal(RandomShiftFlip(3, 0.0, 0.0)(shapes), shapes)


def test_policies_are_seeded_by_torchs_global_stream():
    images = _impulses(32, (16, 16))
    policy = get_augmentation("reference")
    torch.manual_seed(5)
    first = policy(images)
    torch.manual_seed(5)
    assert torch.equal(policy(images), first)
    assert get_augmentation(None) is None
    with pytest.raises(PluginError, match=r"unknown augmentation augmentation='flip'.*"
                                          r"registered: lowpass, reference, shift, "
                                          r"translation_cutout"):
        get_augmentation("flip")


@pytest.fixture(scope="module")
def shapes():
    return make_shifted_shapes(48, (16, 16), shift=3.0, random_state=0)


def test_adapter_augments_training_only_and_stays_seeded(shapes):
    X, _, sd = shapes
    common = {"stn": "affine", "nf": 2, "max_epochs": 2, "batch_size": 16, "random_state": 0}
    augmented = [ISTNAdapter(**common, augmentation="reference").fit(X, sample_domain=sd)
                 for _ in range(2)]
    plain = ISTNAdapter(**common).fit(X, sample_domain=sd)
    first, second = (adapter.transform(X[sd > 0]) for adapter in augmented)
    np.testing.assert_array_equal(first, second)           # same seed, same augmented batches
    np.testing.assert_array_equal(first, augmented[0].transform(X[sd > 0]))   # no test-time aug
    assert not np.array_equal(first, plain.transform(X[sd > 0]))
    with pytest.raises(ValueError, match="augmentation must be None or the name"):
        ISTNAdapter(**common, augmentation=1).fit(X, sample_domain=sd)
    with pytest.raises(PluginError,
                       match="registered: lowpass, reference, shift, translation_cutout"):
        ISTNAdapter(**common, augmentation="jitter").fit(X, sample_domain=sd)


def test_task_model_augments_its_batches_but_not_predict(shapes, monkeypatch):
    X, y, sd = shapes
    rows = sd > 0
    seen = []
    policy = get_augmentation("reference")

    def recording(images):
        seen.append(len(images))
        return policy(images)

    common = {"nf": 2, "max_epochs": 2, "batch_size": 16, "random_state": 0}
    model = TaskClassifier(**common, augmentation="reference")
    monkeypatch.setattr("istn_sk._task.get_augmentation", lambda name: recording)
    model.fit(X[rows], y[rows])
    assert sum(seen) == 2 * rows.sum()          # every training image, every epoch
    seen.clear()
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))
    assert seen == []
    monkeypatch.undo()
    plain = TaskClassifier(**common).fit(X[rows], y[rows])
    again = TaskClassifier(**common, augmentation="reference").fit(X[rows], y[rows])
    assert not np.allclose(plain.predict_proba(X), again.predict_proba(X))


def test_translation_cutout_moves_and_blanks_every_image_and_passes_gradients():
    torch.manual_seed(2)
    images = torch.full((64, 1, 16, 16), 0.5, requires_grad=True)
    out = get_augmentation("translation_cutout")(images)
    blank = (out == 0).flatten(1).float().sum(1)
    assert torch.all(blank >= 64)       # an 8 x 8 box of 0 in each image (half of each side)
    out.sum().backward()
    assert images.grad is not None and 0 < images.grad.mean() < 1


def test_discriminator_augmentation_and_regularisers_change_training_and_stay_seeded(shapes):
    X, _, sd = shapes
    common = {"stn": "affine", "nf": 2, "max_epochs": 2, "batch_size": 16, "random_state": 0}
    plain = ISTNAdapter(**common).fit(X, sample_domain=sd).transform(X[sd > 0])
    for options in ({"dis_augmentation": "translation_cutout"}, {"dis_regularisers": {"r1": 1.0}},
                    {"dis_regularisers": {"lecam": 0.5}}):
        runs = [ISTNAdapter(**common, **options).fit(X, sample_domain=sd) for _ in range(2)]
        first, second = (run.transform(X[sd > 0]) for run in runs)
        np.testing.assert_array_equal(first, second)
        assert not np.array_equal(first, plain), options
        assert np.isfinite(runs[0].history_[:, "dis_loss"]).all()


def test_r1_penalises_the_gradient_on_real_images_and_lecam_its_distance_to_the_anchors():
    from istn_sk._regularisers import LeCamPenalty, R1Penalty

    real = torch.randn(8, 1, 4, 4, requires_grad=True)
    logits = (3.0 * real).flatten(1).sum(1)       # gradient 3 everywhere: |grad|^2 = 9 * 16
    assert R1Penalty(2.0)(real, logits, torch.zeros(8)).item() == pytest.approx(144.0)
    lecam = LeCamPenalty(1.0)
    first = lecam(real, torch.full((8,), 2.0), torch.full((8,), -2.0))
    assert first.item() == pytest.approx(32.0)    # (2 - -2)^2 + (-2 - 2)^2


@pytest.mark.parametrize(("options", "match"), [
    ({"dis_regularisers": {"r2": 1.0}}, "unknown regulariser.*registered: lecam, r1"),
    ({"dis_regularisers": {"r1": -1.0}}, r"dis_regularisers\['r1'\] must be a non-negative"),
    ({"dis_regularisers": ["r1"]}, "dis_regularisers must be None or a dict"),
    ({"dis_augmentation": "cutout"}, "unknown augmentation dis_augmentation='cutout'"),
])
def test_bad_discriminator_options_are_one_clear_error(shapes, options, match):
    X, _, sd = shapes
    with pytest.raises(ValueError, match=match):
        ISTNAdapter(nf=2, max_epochs=1, **options).fit(X, sample_domain=sd)


@pytest.mark.parametrize("shape", [(2, 1, 10, 12, 9), (3, 2, 11, 8)])
def test_lowpass_is_scipys_gaussian_filter_and_passes_gradients(shape):
    from scipy import ndimage

    images = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out = get_augmentation("lowpass")(images)
    expected = [[ndimage.gaussian_filter(channel, 1.0, mode="nearest", truncate=3.0)
                 for channel in image] for image in images.detach().numpy()]
    np.testing.assert_allclose(out.detach().numpy(), np.array(expected), atol=1e-12)
    assert out.detach().std() < 0.6 * images.detach().std()   # white noise is smoothed away
    out.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
