"""Pictures a person checks by eye: S -> S2T grids, difference images, deformation grids.

Written as 8-bit PNG through Pillow; no plotting package is needed. 3D
images are shown by their central slice along the first spatial axis.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ._atomic import atomic_path
from .nn import Warp


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 image as PNG (Pillow), atomically.

    Parameters
    ----------
    path : path-like
        Destination; written to a temporary file in the same folder, then
        renamed, so a failure never leaves a partial file.
    image : ndarray of uint8

    Returns
    -------
    Path
    """
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} "
                         f"{image.shape}")
    path = Path(path)
    with atomic_path(path) as temporary:
        Image.fromarray(np.ascontiguousarray(image)).save(temporary, format="PNG")
    return path


def central_slice(images: np.ndarray) -> np.ndarray:
    """``(n, C, *spatial)`` -> ``(n, C, H, W)``: 2D as is, 3D by the central slice of axis 0."""
    if images.ndim == 5:
        return images[:, :, images.shape[2] // 2]
    if images.ndim != 4:
        raise ValueError(f"expected (n, C, H, W) or (n, C, D, H, W) images, got {images.shape}")
    return images


def grey(images: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Map values in ``[low, high]`` to RGB uint8 grey levels (first channel)."""
    unit = np.clip((images[:, 0] - low) / (high - low), 0.0, 1.0)
    return np.repeat((unit * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def signed(images: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Map signed values to RGB: blue negative, white zero, red positive."""
    values = images[:, 0]
    scale = float(np.abs(values).max()) if scale is None else scale
    unit = np.clip(values / max(scale, 1e-8), -1.0, 1.0)
    rgb = np.ones((*unit.shape, 3))
    rgb[..., 0] -= np.clip(-unit, 0, 1)
    rgb[..., 1] -= np.abs(unit)
    rgb[..., 2] -= np.clip(unit, 0, 1)
    return (rgb * 255).round().astype(np.uint8)


def deformation_grid(displacement: np.ndarray, spacing: int = 4) -> np.ndarray:
    """Draw each field as a warped line grid: straight lines mean no deformation.

    Parameters
    ----------
    displacement : ndarray of shape (n, 2, H, W) or (n, 3, D, H, W)
        Voxel displacements (3D fields are shown by the central slice's
        in-plane components).
    spacing : int, default=4
        Pixels between grid lines.

    Returns
    -------
    ndarray of shape (n, H, W, 3), uint8
    """
    if displacement.ndim == 5:
        displacement = displacement[:, 1:, displacement.shape[2] // 2]
    n, _, height, width = displacement.shape
    lines = np.zeros((height, width), dtype=np.float32)
    lines[::spacing, :] = 1.0
    lines[:, ::spacing] = 1.0
    pattern = torch.from_numpy(np.broadcast_to(lines, (n, 1, height, width)).copy())
    warped = Warp(padding_mode="zeros")(pattern, torch.from_numpy(
        np.ascontiguousarray(displacement, dtype=np.float32))).numpy()
    return grey(1.0 - 2.0 * warped)


def explanation_grid(parts: dict[str, np.ndarray], target: np.ndarray | None = None,
                     n_images: int = 8, zoom: int = 3) -> np.ndarray:
    """One picture of :meth:`istn_sk.ISTNAdapter.explain`'s output.

    Columns are images; rows are the source image, the ITN output, S2T, the
    difference S2T - S (blue darker, red brighter), the deformation grid and,
    when given, target images for comparison.

    Parameters
    ----------
    parts : dict
        What ``explain`` returned.
    target : ndarray, optional
        Target-domain images ``(m, C, *spatial)`` shown in the last row.
    n_images : int, default=8
        Columns.
    zoom : int, default=3
        Pixel repetition, so 28x28 digits are visible.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
    """
    count = min(n_images, len(parts["input"]))
    rows = [grey(central_slice(parts[key][:count])) for key in ("input", "appearance", "output")]
    rows.append(signed(central_slice(parts["difference"][:count])))
    rows.append(deformation_grid(parts["displacement"][:count]))
    if target is not None:
        shown = grey(central_slice(np.asarray(target)[:count]))
        if len(shown) < count:
            shown = np.concatenate([shown, np.full((count - len(shown), *shown.shape[1:]), 255,
                                                   dtype=np.uint8)])
        rows.append(shown)
    height, width = rows[0].shape[1:3]
    canvas = np.full((len(rows) * (height + 1) - 1, count * (width + 1) - 1, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c in range(count):
            canvas[r * (height + 1):r * (height + 1) + height,
                   c * (width + 1):c * (width + 1) + width] = row[c]
    return canvas.repeat(zoom, axis=0).repeat(zoom, axis=1)
