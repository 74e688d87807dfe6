"""Learning curves as a small RGB picture: one panel per series, drawn with numpy alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np

# A 3x5 pixel font: five rows of three bits (4 = left column), one digit per row.
_FONT = {
    "0": "75557", "1": "26227", "2": "71747", "3": "71717", "4": "55711", "5": "74717",
    "6": "74757", "7": "71111", "8": "75757", "9": "75717", "a": "25755", "b": "65656",
    "c": "34443", "d": "65556", "e": "74647", "f": "74644", "g": "34553", "h": "55755",
    "i": "72227", "j": "11152", "k": "55655", "l": "44447", "m": "57755", "n": "65555",
    "o": "25552", "p": "65644", "q": "25563", "r": "65655", "s": "34216", "t": "72222",
    "u": "55553", "v": "55552", "w": "55775", "x": "55255", "y": "55222", "z": "71247",
    ".": "00002", "-": "00700", "_": "00007", " ": "00000", ":": "02020", "=": "07070",
    "@": "25743", "(": "12221", ")": "42224", "/": "11244", ">": "42124", ",": "00024",
    "+": "02720",
}
_SCALE = 2
_ADVANCE = 4 * _SCALE
_TITLE = 7 * _SCALE
_INK = np.array([30, 30, 30], dtype=np.uint8)
_FRAME = np.array([170, 170, 170], dtype=np.uint8)
_LINE = np.array([31, 90, 180], dtype=np.uint8)


def _glyph(char: str) -> np.ndarray:
    rows = _FONT.get(char.lower(), "77777")
    bits = np.array([[int(row) >> (2 - column) & 1 for column in range(3)] for row in rows])
    return bits.astype(bool).repeat(_SCALE, axis=0).repeat(_SCALE, axis=1)


def draw_text(canvas: np.ndarray, text: str, top: int, left: int) -> None:
    """Write ``text`` into an RGB canvas in place (3x5 glyphs at scale 2; cut at the edge)."""
    for i, char in enumerate(text):
        x = left + i * _ADVANCE
        if x + 3 * _SCALE > canvas.shape[1]:
            return
        canvas[top:top + 5 * _SCALE, x:x + 3 * _SCALE][_glyph(char)] = _INK


def _draw_line(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    for (x0, y0), (x1, y1) in pairwise(zip(xs, ys, strict=True)):
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        px = np.round(np.linspace(x0, x1, steps)).astype(int)
        py = np.round(np.linspace(y0, y1, steps)).astype(int)
        canvas[py, px] = canvas[py + 1, px] = _LINE
    if len(xs) == 1:
        x, y = round(xs[0]), round(ys[0])
        canvas[y - 1:y + 2, x - 1:x + 2] = _LINE


def line_plot(series: Mapping[str, Sequence[float]], *, width: int = 480,
              panel_height: int = 80) -> np.ndarray:
    """Draw each series against its index, one panel per series, stacked.

    Each panel's title gives the series' name, first and last values and its
    range; the vertical axis spans that range. Non-finite values (epochs
    without a record) are skipped.

    Parameters
    ----------
    series : mapping of str to sequence of float
        E.g. ``{"gan_loss": [...], "dis_loss": [...]}``.
    width : int, default=480
        Picture width in pixels.
    panel_height : int, default=80
        Height of each plot area in pixels.

    Returns
    -------
    ndarray of shape (H, width, 3), uint8
        Write it with :func:`istn_sk.figures.write_png`.
    """
    if not series:
        raise ValueError("nothing to plot")
    margin = 6
    panel = _TITLE + panel_height + 2 * margin
    canvas = np.full((panel * len(series), width, 3), 255, dtype=np.uint8)
    for index, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        top = index * panel + margin
        box_top, box_bottom = top + _TITLE, top + _TITLE + panel_height - 1
        left, right = margin, width - margin - 1
        canvas[box_top, left:right + 1] = canvas[box_bottom, left:right + 1] = _FRAME
        canvas[box_top:box_bottom + 1, left] = canvas[box_top:box_bottom + 1, right] = _FRAME
        seen = np.flatnonzero(np.isfinite(values))
        if not seen.size:
            draw_text(canvas, f"{name}: no values", top, left)
            continue
        low, high = float(values[seen].min()), float(values[seen].max())
        draw_text(canvas, f"{name}: {values[seen[0]]:.3g} -> {values[seen[-1]]:.3g} "
                          f"(min {low:.3g}, max {high:.3g})", top, left)
        span = max(len(values) - 1, 1)
        xs = left + 2 + seen / span * (right - left - 4)
        unit = (values[seen] - low) / (high - low) if high > low else np.full(seen.size, 0.5)
        ys = box_bottom - 2 - unit * (panel_height - 5)
        _draw_line(canvas, xs, ys)
    return canvas
