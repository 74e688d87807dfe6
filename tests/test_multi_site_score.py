"""The site classifier over any number of sites: chance, separable sites, agreement, errors."""

import numpy as np
import pytest

from istn_sk.harmonisation import multi_site_classification_score, site_classification_score

FOUR_SITES = np.repeat([0, 1, 2, 3], 40)


def noise(seed: int, n: int, *spatial: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.3, size=(n, 1, *spatial))


def test_identical_sites_score_chance_over_seeds():
    # Measured over seeds 0-19: 0.18-0.35, mean 0.250, sd 0.045 (40 images per site)
    scores = [multi_site_classification_score(noise(seed, 160, 8, 8), FOUR_SITES, pool=2,
                                              random_state=seed) for seed in range(10)]
    accuracies = np.array([score["balanced_accuracy"] for score in scores])
    assert all(score["chance"] == 0.25 and score["n_sites"] == 4 for score in scores)
    assert ((accuracies > 0.1) & (accuracies < 0.42)).all()
    assert abs(accuracies.mean() - 0.25) < 0.04


def test_unequal_site_sizes_keep_chance_at_one_over_n_sites():
    # Measured over seeds 0-19: mean 0.336; a majority vote would also score 1/3
    sites = np.r_[np.zeros(60, int), np.ones(25, int), np.full(15, 2)]
    accuracies = [multi_site_classification_score(noise(seed, 100, 8, 8), sites, pool=2,
                                                  random_state=seed)["balanced_accuracy"]
                  for seed in range(10)]
    assert abs(np.mean(accuracies) - 1 / 3) < 0.05


def test_separable_sites_are_told_apart_in_2d_and_3d():
    images = noise(0, 160, 8, 8, 8) + 0.3 * FOUR_SITES[:, None, None, None, None]
    assert multi_site_classification_score(images, FOUR_SITES, pool=2)["balanced_accuracy"] >= 0.95
    names = np.repeat(["camcan", "site2", "ukbb"], 20)
    images = noise(1, 60, 16, 16) + 0.3 * np.repeat([0, 1, 2], 20)[:, None, None, None]
    score = multi_site_classification_score(images, names)
    assert score["balanced_accuracy"] >= 0.95
    assert score["chance"] == pytest.approx(1 / 3)


def test_one_visible_site_among_four_scores_half():
    # Site 3 is always found, the other three are confused: (1 + 3 / 3) / 4 = 0.5
    images = noise(0, 160, 8, 8)
    images[FOUR_SITES == 3] += 0.3
    score = multi_site_classification_score(images, FOUR_SITES, pool=2)["balanced_accuracy"]
    assert 0.4 <= score <= 0.6


def test_two_sites_agree_with_the_two_set_score():
    images = noise(0, 40, 8, 8, 8)
    images[20:] += 0.05
    two = site_classification_score(images[:20], images[20:], pool=2, n_permutations=3,
                                    random_state=3)
    many = multi_site_classification_score(images, np.repeat([0, 1], 20), pool=2, random_state=3)
    assert many["balanced_accuracy"] == two["balanced_accuracy"]
    assert many["chance"] == 0.5


@pytest.mark.parametrize(("images", "sites", "message"), [
    (noise(0, 20, 8, 8), np.zeros(20, int), "at least 2 sites"),
    (noise(0, 20, 8, 8), np.repeat([0, 1], 9), "one label per image: 20 images"),
    (noise(0, 20, 8, 8), np.repeat([0, 1], 10)[:, None], "one label per image"),
    (noise(0, 20, 8, 8), np.r_[np.zeros(16, int), np.ones(4, int)],
     r"at least cv=5 images per site; fewer: \{'1': 4\}"),
    (noise(0, 20, 8, 8)[:, 0], np.repeat([0, 1], 10), "must be an \\(n, C, \\*spatial\\) array"),
    (np.full((20, 1, 8, 8), np.nan), np.repeat([0, 1], 10), "NaN or infinity"),
])
def test_bad_inputs_are_clear_errors(images, sites, message):
    with pytest.raises(ValueError, match=message):
        multi_site_classification_score(images, sites)


def test_a_bad_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="pool must be a positive integer"):
        multi_site_classification_score(noise(0, 20, 8, 8), np.repeat([0, 1], 10), pool=0)
