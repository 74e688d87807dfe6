"""Built-in datasets plugin: Morpho-MNIST domains and simulated two-site brain MRI."""

from __future__ import annotations

from istn_sk.datasets import BrainSites, MorphoMNIST
from istn_sk.hookspecs import hookimpl


@hookimpl
def istn_sk_register_datasets(register) -> None:
    """Register ``"morpho-mnist"`` and ``"brain-sites"``."""
    register.add(
        "morpho-mnist",
        MorphoMNIST,
        description="Morpho-MNIST domains A-D (thin/thick, upright/slanted); "
        "healthy/fractured/swollen digits",
    )
    register.add(
        "brain-sites",
        BrainSites,
        description="simulated two-site 3D T1 brain MRI (Cam-CAN-like vs UKBB-like); sex labels",
    )
