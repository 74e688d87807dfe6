"""Helpers shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from istn_sk import make_shifted_shapes
from istn_sk.io import write_image


def write_shapes_manifest(folder: Path, train_of_12: int) -> Path:
    """Two sites (A, B) of 12x12 PNG shapes with labels; ``train_of_12`` of every 12 are train.

    Site B is site A moved by 2 px and darker. Returns the path of the
    ``manifest.tsv`` (columns ``id``, ``image``, ``label``, ``site``, ``split``).
    """
    X, y, sd = make_shifted_shapes(12, (12, 12), shift=2.0, random_state=0)
    rows = []
    for i, (image, label, domain) in enumerate(zip(X, y, sd, strict=True)):
        site = "A" if domain > 0 else "B"
        relative = f"{site}/img{i:03d}.png"
        (folder / site).mkdir(exist_ok=True)
        write_image(folder / relative, image)
        rows.append({"id": f"img{i:03d}", "image": relative, "label": label, "site": site,
                     "split": "train" if i % 12 < train_of_12 else "test"})
    pd.DataFrame(rows).to_csv(folder / "manifest.tsv", sep="\t", index=False)
    return folder / "manifest.tsv"


@pytest.fixture(scope="session")
def shapes_manifest():
    """:func:`write_shapes_manifest`, for module fixtures that build their own manifest."""
    return write_shapes_manifest
