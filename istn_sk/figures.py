"""Pictures a person checks by eye: S -> S2T grids, difference images, deformation grids.

:func:`explanation_grid` draws a labelled :class:`matplotlib.figure.Figure`
(Agg canvas, no pyplot state); :func:`save_figure` writes it as PNG, SVG or
PDF by the file's suffix. The small array helpers (:func:`grey`,
:func:`signed`, :func:`deformation_grid`) give uint8 pictures that
:func:`write_png` writes through Pillow, e.g. one per image. Learning curves
and protocol bar charts are :func:`learning_curves` and :func:`protocol_bars`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._atomic import atomic_path
from .harmonisation import jacobian_determinant
from .io._plot import learning_curves, new_figure, protocol_bars
from .nn import Warp

__all__ = ["central_slice", "deformation_grid", "explanation_grid", "grey", "learning_curves",
           "protocol_bars", "save_figure", "signed", "write_png"]

#: File suffixes :func:`save_figure` writes, and matplotlib's format name for each.
FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def save_figure(path: str | os.PathLike, figure: Figure, *, dpi: int = 150) -> Path:
    """Write a figure as PNG, SVG or PDF, chosen by the suffix, atomically.

    Parameters
    ----------
    path : path-like
        Destination ending in ``.png``, ``.svg`` or ``.pdf``; written to a
        temporary file in the same folder, then renamed.
    figure : matplotlib.figure.Figure
    dpi : int, default=150
        Resolution of PNG output.

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: a figure is written as {', '.join(FIGURE_FORMATS)}, "
                         f"not {path.suffix or 'a file without suffix'}")
    return _save(path, figure, fmt, dpi)


def _save(path: Path, figure: Figure, fmt: str, dpi: int) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=fmt, dpi=dpi)
    return path


def write_png(path: str | os.PathLike, image: np.ndarray | Figure) -> Path:
    """Write a uint8 image or a figure as PNG, atomically.

    Parameters
    ----------
    path : path-like
        Destination; written to a temporary file in the same folder, then
        renamed, so a failure never leaves a partial file.
    image : ndarray of uint8 or matplotlib.figure.Figure
        A ``(H, W)`` grey or ``(H, W, 3)`` RGB picture (written by Pillow,
        pixel for pixel), or a figure (as :func:`save_figure` writes it).

    Returns
    -------
    Path
    """
    if isinstance(image, Figure):
        return _save(Path(path), image, "png", 150)
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


#: Row labels of :func:`explanation_grid`, top to bottom (``T`` only with a target).
_DIFFERENCE = "S2T \u2212 S"
EXPLANATION_ROWS = ("S", "ITN output", "S2T", _DIFFERENCE, "deformation", "|u|", "det J", "T")
_IMAGE_ROWS = ("S", "ITN output", "S2T", "T")


def _planes(volume: np.ndarray) -> list[np.ndarray]:
    """A 2D image as is; a 3D volume as its central slices across axes 0, 1 and 2."""
    if volume.ndim == 2:
        return [volume]
    return [np.take(volume, volume.shape[axis] // 2, axis=axis) for axis in range(3)]


def _in_plane(field: np.ndarray) -> list[np.ndarray]:
    """``(D, *spatial)`` displacement -> for each plane of :func:`_planes`, its ``(2, h, w)``
    in-plane components (rows, then columns)."""
    if len(field) == 2:
        return [field]
    return [np.stack([_planes(field[k])[axis] for k in range(3) if k != axis])
            for axis in range(3)]


def _draw_grid(ax, shift: np.ndarray, spacing: int) -> None:
    """Lines through ``x + u(x)`` for ``x`` on a regular grid: straight means no deformation."""
    height, width = shift.shape[1:]
    rows, columns = np.mgrid[0:height, 0:width].astype(float)
    y, x = rows + shift[0], columns + shift[1]
    for r in range(0, height, spacing):
        ax.plot(x[r], y[r], color="0.15", linewidth=0.6)
    for c in range(0, width, spacing):
        ax.plot(x[:, c], y[:, c], color="0.15", linewidth=0.6)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_aspect("equal")


def _symmetric(planes: list[np.ndarray], centre: float, least: float) -> Normalize:
    """``centre`` ± the largest deviation (at least ``least``, so a constant map stays legible)."""
    half = max(max(float(np.abs(p - centre).max()) for p in planes), least)
    return Normalize(centre - half, centre + half)


def explanation_grid(parts: dict[str, np.ndarray], target: np.ndarray | None = None,
                     n_images: int = 8, *, spacing: int = 4, cell: float = 1.0,
                     target_label: str = "T") -> Figure:
    """One labelled figure of :meth:`istn_sk.ISTNAdapter.explain`'s output.

    Columns are images (3D volumes: three columns each, the central slices
    across spatial axes 0, 1 and 2). Rows, each labelled: the source image
    S, the ITN output, S2T, the difference S2T - S, the deformation as a
    warped line grid, the displacement magnitude ``|u|`` in voxels, the Jacobian
    determinant of ``x -> x + u(x)`` and, when given, target images T. The
    image rows share one intensity scale and colourbar; the difference is on
    a diverging scale centred on 0 in image units, the determinant on one
    centred on 1 (< 1 shrinks, <= 0 folds), each with its colourbar.

    Parameters
    ----------
    parts : dict
        What ``explain`` returned: ``input``, ``appearance``, ``output``,
        ``difference`` ``(n, C, *spatial)`` (first channel shown) and
        ``displacement`` ``(n, D, *spatial)``.
    target : ndarray, optional
        Target-domain images ``(m, C, *spatial)`` shown in the last row.
    n_images : int, default=8
        Images shown (the first ones).
    spacing : int, default=4
        Voxels between deformation grid lines.
    cell : float, default=1.0
        Size of one panel in inches.
    target_label : str, default="T"
        Label of the target row (e.g. "true T rendering" when ``target``
        holds the paired truth of each source image).

    Returns
    -------
    matplotlib.figure.Figure
        Write it with :func:`save_figure` (PNG, SVG or PDF by suffix).
    """
    count = min(n_images, len(parts["input"]))
    spatial = np.ndim(parts["input"]) - 2
    if spatial not in (2, 3) or count == 0:
        raise ValueError(f"expected (n, C, H, W) or (n, C, D, H, W) images with n > 0, got "
                         f"{np.shape(parts['input'])}")

    def planes(images) -> list[np.ndarray]:
        return [p for image in np.asarray(images, dtype=float)[:count] for p in _planes(image)]

    displacement = np.asarray(parts["displacement"], dtype=float)[:count]
    shown = {"S": planes(parts["input"][:, 0]), "ITN output": planes(parts["appearance"][:, 0]),
             "S2T": planes(parts["output"][:, 0]), _DIFFERENCE: planes(parts["difference"][:, 0]),
             "deformation": [s for field in displacement for s in _in_plane(field)],
             "|u|": planes(np.linalg.norm(displacement, axis=1)),
             "det J": planes(jacobian_determinant(displacement))}
    if target is not None:
        shown["T"] = planes(np.asarray(target)[:, 0])
    intensities = [p for key in _IMAGE_ROWS for p in shown.get(key, [])]
    scales = {key: (Normalize(min(p.min() for p in intensities), max(p.max() for p in intensities)),
                    "gray") for key in _IMAGE_ROWS}
    scales[_DIFFERENCE] = _symmetric(shown[_DIFFERENCE], 0.0, 0.01), "RdBu_r"
    scales["|u|"] = Normalize(0.0, max(max(p.max() for p in shown["|u|"]),
                                                  0.1)), "viridis"
    scales["det J"] = _symmetric(shown["det J"], 1.0, 0.1), "PuOr_r"
    columns = len(shown["S"])
    figure = new_figure(figsize=(cell * columns + 1.6, cell * len(shown)), layout="constrained")
    layout = figure.add_gridspec(len(shown), columns + 1, width_ratios=[1] * columns + [0.12])
    for r, (label, row) in enumerate(shown.items()):
        for c in range(columns):
            ax = figure.add_subplot(layout[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(target_label if label == "T" else label)
            if r == 0:
                ax.set_title(f"#{c}" if spatial == 2 else f"#{c // 3} axis {c % 3}", fontsize=8)
            if c >= len(row):
                ax.set_frame_on(False)
            elif label == "deformation":
                _draw_grid(ax, row[c], spacing)
            else:
                norm, cmap = scales[label]
                ax.imshow(row[c], cmap=cmap, norm=norm, interpolation="nearest")
    bars = {"intensity": (slice(0, 3), "S"), _DIFFERENCE: (3, _DIFFERENCE),
            "|u| (voxels)": (5, "|u|"), "det J": (6, "det J")}
    for text, (rows, key) in bars.items():
        norm, cmap = scales[key]
        bar = figure.colorbar(ScalarMappable(norm, cmap), cax=figure.add_subplot(layout[rows, -1]))
        bar.set_label(text, fontsize="small")
    return figure
