"""istn_sk.figures: the explanation grid, learning curves, protocol bars and figure files."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from PIL import Image

from istn_sk.figures import (
    EXPLANATION_ROWS,
    explanation_grid,
    learning_curves,
    protocol_bars,
    save_figure,
    write_png,
)
from istn_sk.harmonisation import jacobian_determinant


def _parts(rng, n, spatial):
    images = rng.uniform(-1.0, 1.0, (n, 1, *spatial))
    return {"input": images, "appearance": 0.5 * images, "output": 0.5 * images + 0.1,
            "difference": -0.5 * images + 0.1,
            "displacement": rng.normal(0.0, 0.4, (n, len(spatial), *spatial))}


def _panels(figure):
    """Image axes, colourbar axes (those with a label on the right) by position."""
    bars = [ax for ax in figure.axes if ax.get_ylabel() and ax.yaxis.get_label_position()
            == "right"]
    return [ax for ax in figure.axes if ax not in bars], bars


def test_explanation_grid_labels_rows_and_shares_the_image_scale():
    rng = np.random.default_rng(0)
    parts = _parts(rng, 5, (12, 10))
    target = rng.uniform(-2.0, 1.5, (3, 1, 12, 10))
    figure = explanation_grid(parts, target, n_images=4)
    panels, bars = _panels(figure)
    assert len(panels) == 4 * len(EXPLANATION_ROWS)
    rows = [panels[r * 4:(r + 1) * 4] for r in range(len(EXPLANATION_ROWS))]
    assert [row[0].get_ylabel() for row in rows] == list(EXPLANATION_ROWS)
    assert [ax.get_title() for ax in rows[0]] == ["#0", "#1", "#2", "#3"]
    assert [bar.get_ylabel() for bar in bars] == ["intensity", "S2T \u2212 S", "|u| (voxels)",
                                                   "det J"]
    shown = np.concatenate([parts[k][:4].ravel() for k in ("input", "appearance", "output")]
                           + [target.ravel()])
    for r in (0, 1, 2, 7):
        limits = {ax.images[0].get_clim() for ax in rows[r] if ax.images}
        assert limits == {(shown.min(), shown.max())}
    assert len(rows[7][3].images) == 0   # three target images for four columns
    half = np.abs(parts["difference"][:4]).max()
    assert rows[3][0].images[0].get_clim() == pytest.approx((-half, half))
    assert rows[3][0].images[0].get_cmap().name == "RdBu_r"
    assert all(len(ax.lines) == 12 // 4 + 10 // 4 + 1 and not ax.images for ax in rows[4])
    np.testing.assert_allclose(rows[5][1].images[0].get_array(),
                               np.linalg.norm(parts["displacement"][1], axis=0))
    determinant = jacobian_determinant(parts["displacement"][:4])
    np.testing.assert_allclose(rows[6][2].images[0].get_array(), determinant[2])
    low, high = rows[6][0].images[0].get_clim()
    assert (low + high) / 2 == pytest.approx(1.0) and high == pytest.approx(
        1 + np.abs(determinant - 1).max())
    paired, _ = _panels(explanation_grid(parts, target, n_images=4, target_label="true B"))
    assert paired[7 * 4].get_ylabel() == "true B" and paired[0].get_ylabel() == "S"


def test_explanation_grid_shows_volumes_as_three_central_slices():
    rng = np.random.default_rng(1)
    parts = _parts(rng, 2, (6, 8, 10))
    panels, _ = _panels(explanation_grid(parts))
    assert len(panels) == 2 * 3 * (len(EXPLANATION_ROWS) - 1)
    assert [ax.get_title() for ax in panels[:6]] == [
        f"#{i} axis {a}" for i in range(2) for a in range(3)]
    volume = parts["input"][1, 0]
    for axis, ax in enumerate(panels[3:6]):
        np.testing.assert_array_equal(ax.images[0].get_array(),
                                      np.take(volume, volume.shape[axis] // 2, axis=axis))
    with pytest.raises(ValueError, match="expected"):
        explanation_grid({key: value[:, :, 0, 0] for key, value in parts.items()})


def test_figures_are_written_by_suffix(tmp_path):
    rng = np.random.default_rng(2)
    figure = explanation_grid(_parts(rng, 2, (8, 8)))
    with Image.open(save_figure(tmp_path / "grid.png", figure)) as written:
        assert written.format == "PNG" and written.width > 200
    assert (save_figure(tmp_path / "grid.svg", figure).read_text().lstrip()
            .startswith("<?xml"))
    assert save_figure(tmp_path / "grid.PDF", figure).read_bytes().startswith(b"%PDF")
    with Image.open(write_png(tmp_path / "same.png", figure)) as written:
        assert written.format == "PNG"
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        save_figure(tmp_path / "grid.jpg", figure)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grid.PDF", "grid.png", "grid.svg", "same.png"]


def test_learning_curves_draw_every_loss_term_present():
    history = [{"epoch": e, "train_loss": 1.0 / e, "gan_loss": 0.5, "dis_loss": 0.25,
                "cyc_loss": 2.0 / e, "valid_loss": 0.3 if e > 2 else None, "valid_acc": 0.1 * e,
                "dur": 1.0} for e in range(1, 6)]
    figure = learning_curves(history, log_scale=True)
    (ax,) = figure.axes
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["train_loss", "gan_loss", "cyc_loss", "dis_loss", "valid_loss"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    np.testing.assert_array_equal(ax.lines[4].get_xdata(), [3, 4, 5])
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [2.0 / e for e in range(1, 6)])
    figure.canvas.draw()
    assert any(label.get_text() for label in ax.get_yticklabels())

    losses, scores = learning_curves(history, ["train_loss", "valid_acc"]).axes
    assert losses.get_yscale() == "linear" and scores.get_ylabel() == "score"
    assert [line.get_label() for line in scores.lines] == ["valid_acc"]
    with pytest.raises(ValueError, match="nothing to plot"):
        learning_curves([{"epoch": 1, "dur": 1.0}])


def test_protocol_bars_give_mean_and_sd_over_seeds():
    runs = pd.DataFrame({"name": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0],
                         "no_da": [0.4, 0.5, 0.6, 0.3], "oracle": [0.9, 0.9, 0.9, 0.8]})
    (ax,) = protocol_bars(runs).axes
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["no_da", "oracle"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["a (n=3)", "b (n=1)"]
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == pytest.approx([0.5, 0.3, 0.9, 0.8])
    no_da = next(c for c in ax.containers if isinstance(c, BarContainer))
    spread = no_da.errorbar.lines[2][0].get_segments()
    assert [s[1, 0] - s[0, 0] for s in spread] == pytest.approx([0.2, 0.0])

    report = pd.DataFrame({"model": ["T_S", "T_S2T", "Δ", "recovered"] * 2,
                           "evaluated_on": ["T", "T", "x", "y"] * 2,
                           "accuracy": [0.4, 0.8, 0.4, 0.9, 0.6, 0.8, 0.2, 0.5]})
    (ax,) = protocol_bars(report).axes
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "T_S · T (n=2)", "T_S2T · T (n=2)"]
    assert [patch.get_width() for patch in ax.patches] == pytest.approx([0.5, 0.8])
    with pytest.raises(ValueError, match="no grouping column"):
        protocol_bars(runs, by="setting")
