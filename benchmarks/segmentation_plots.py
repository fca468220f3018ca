"""The figures of ``benchmarks/segmentation.py``: the panel of test image 20 and the reliability diagrams."""

from __future__ import annotations

import numpy as np

from flowlearn.evaluation import reliability_diagram
from flowlearn.io import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_image(img, truth, membrane):
    """RGB: the grey image, false membrane in red, missed membrane in blue."""
    g = (img - img.min()) / max(float(np.ptp(img)), 1e-12)
    rgb = np.repeat(0.6 * g[..., None], 3, axis=-1)
    rgb[membrane & (truth == 0)] = (1.0, 0.1, 0.1)
    rgb[~membrane & (truth == 1)] = (0.1, 0.3, 1.0)
    return rgb


def panel(path, first, probs, maps, rows, scribble=None):
    """One row per method (table and name): its membrane probability (graph cuts: its labeling at t = 0.5),
    its membrane at the validation threshold and its errors there, on the first test image ``first = (image,
    truth)``; a top row with the image, the truth and (``scribble = (image, sparse labels)``) the scribbles of
    a corner of a training image."""
    plt = _pyplot()
    img, truth = first
    keys = list(probs)
    fig, axes = plt.subplots(len(keys) + 1, 3, figsize=(8.4, 2.9 * (len(keys) + 1)), squeeze=False)
    axes[0, 0].imshow(img, cmap="gray")
    axes[0, 0].set_title("test image 20", fontsize=9)
    axes[0, 1].imshow(truth, cmap="gray_r", vmin=0, vmax=1)
    axes[0, 1].set_title("truth (black = membrane)", fontsize=9)
    if scribble is not None:
        s_img, sparse = (a[:192, :192] for a in scribble)      # a corner, so that the thin strokes show
        rgb = np.repeat(s_img[..., None], 3, axis=-1).astype(np.float64)
        rgb[sparse == 1], rgb[sparse == 0] = (1.0, 0.1, 0.1), (0.1, 0.9, 0.1)
        axes[0, 2].imshow(rgb)
        axes[0, 2].set_title("scribbles, train image 0 (corner)\n(red membrane, green cell)", fontsize=9)
    else:
        axes[0, 2].axis("off")
    axes[0, 0].set_ylabel("data", fontsize=9)
    for ax_row, key in zip(axes[1:], keys):
        table, name = key
        r = rows[table][name]
        ax_row[0].imshow(probs[key][0], cmap="magma", vmin=0, vmax=1)
        ax_row[0].set_title("membrane probability" if np.isfinite(r["ece"]) else "labeling at t = 0.5", fontsize=8)
        ax_row[1].imshow(maps[key][0], cmap="gray_r", vmin=0, vmax=1)
        ax_row[1].set_title(f"membrane at t = {r['threshold']:.1f}", fontsize=8)
        ax_row[2].imshow(error_image(img, truth, maps[key][0]))
        ax_row[2].set_title("errors (red: false, blue: missed)", fontsize=8)
        ax_row[0].set_ylabel(f"{name}\n({table})\nV_rand {r['v_rand']:.3f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("ISBI 2012, test image 20: membrane probabilities and errors at the validation threshold",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    save_figure(path, fig)


def reliability(path, probs, truth, rows, bins: int = 10):
    """Reliability diagrams of the test probabilities, one panel per table, one line per method with
    probabilities (graph cuts have none)."""
    plt = _pyplot()
    tables = list(dict.fromkeys(t for t, _ in probs))
    fig, axes = plt.subplots(1, max(len(tables), 1), figsize=(5.2 * max(len(tables), 1), 5.0), squeeze=False)
    for ax, table in zip(axes[0], tables):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
        for (t, name), p in probs.items():
            if t != table or not np.isfinite(rows[t][name]["ece"]):
                continue
            b = reliability_diagram(p, truth, bins)
            full = b.counts > 0
            ax.plot(b.confidence[full], b.frequency[full], "o-", ms=3, label=f"{name} (ECE {b.ece:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted membrane probability (bin mean)",
               ylabel="fraction of membrane pixels", title=f"test images 20-23, trained on {table} labels")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(path, fig)
