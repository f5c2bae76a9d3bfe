"""A trial's diagnostic plots as PNG files: curves, confusion matrix, gradient norms, weights, health.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no global figure state is kept or leaked;
each function writes one PNG into ``out_dir`` and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from worker.health import EXPLODING, VANISHING

DPI = 100
PREDICT_BATCH = 1024


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas; fixed margins (no layout engine: each draw costs time)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, **margins: float) -> Path:
    fig.subplots_adjust(**{"left": 0.1, "right": 0.97, "bottom": 0.14, "top": 0.9, **margins})
    fig.savefig(path, pil_kwargs={"compress_level": 1})
    return path


def training_curves(history: Mapping[str, Sequence[float]], best_epoch: int, out_dir: Path) -> Path:
    """Loss and accuracy per epoch, training and validation, with the kept (best) epoch marked."""
    fig = _figure(9, 3.4)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if history.get(key):
                ax.plot(range(len(history[key])), history[key], marker="o", markersize=3, label=label)
        if best_epoch >= 0:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label="kept epoch")
        ax.set(title=metric, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_dir / "training_curves.png")


def predict_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's predicted class of every example (inference mode, in batches)."""
    parts = [
        np.argmax(keras.ops.convert_to_numpy(model(x[i : i + PREDICT_BATCH], training=False)), axis=-1)
        for i in range(0, len(x), PREDICT_BATCH)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, out_dir: Path) -> Path:
    """Counts of (true, predicted) class pairs (zeros blank), coloured by the share of each true class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(3.0 + 0.35 * num_classes, 14.0)
    fig = _figure(side + 1, side)
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    if num_classes <= 20:
        for true, pred in zip(*np.nonzero(counts), strict=True):
            colour = "white" if shares[true, pred] > 0.5 else "black"
            ax.text(pred, true, str(counts[true, pred]), ha="center", va="center", fontsize=8, color=colour)
        ax.set(xticks=range(num_classes), yticks=range(num_classes))
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set(xlabel="predicted class", ylabel="true class", title=f"validation, accuracy {accuracy:.3f}")
    return _save(fig, out_dir / "confusion_matrix.png")


def gradient_norms(norms: Mapping[str, float], out_dir: Path) -> Path:
    """Each layer's gradient norm (log scale), with the health mode's vanishing and exploding limits."""
    names = list(norms)
    values = np.array([norms[name] for name in names], dtype=np.float64)
    shown = np.where(np.isfinite(values) & (values > 0), values, VANISHING / 10)
    bad = ~np.isfinite(values) | (values < VANISHING) | (values > EXPLODING)
    fig = _figure(max(5.0, 0.6 * len(names) + 2), 3.6)
    ax = fig.subplots()
    ax.bar(range(len(names)), shown, color=np.where(bad, "tab:red", "tab:blue"))
    ax.axhline(VANISHING, color="gray", linestyle=":", linewidth=1, label=f"vanishing < {VANISHING:g}")
    ax.axhline(EXPLODING, color="gray", linestyle="--", linewidth=1, label=f"exploding > {EXPLODING:g}")
    ax.set_yscale("log")
    ax.set_ylim(min(VANISHING, *shown) / 100, max(EXPLODING, *shown) * 1e4)  # room for the legend
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="gradient norm", title="per-layer gradient norm, one training batch")
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, out_dir / "gradient_norms.png", left=0.14, bottom=0.24)


def _is_bias(variable: keras.Variable) -> bool:
    return len(variable.shape) == 1 and variable.name in ("bias", "beta")


def weight_distributions(model: keras.Model, out_dir: Path) -> Path:
    """Histograms of each layer's trainable weights (kernels, embeddings, gammas) and biases."""
    layers = [layer for layer in model.layers if layer.trainable_weights]
    height = 1.5 * max(len(layers), 1) + 0.5
    fig = _figure(8, height)
    axes = fig.subplots(max(len(layers), 1), 2, squeeze=False)
    for row, layer in zip(axes, layers, strict=False):
        for ax, biases in zip(row, (False, True), strict=True):
            values = [
                keras.ops.convert_to_numpy(w).ravel()
                for w in layer.trainable_weights
                if _is_bias(w) == biases
            ]
            flat = np.concatenate(values).astype(np.float64) if values else np.zeros(0)
            flat = flat[np.isfinite(flat)]
            if flat.size:
                counts, edges = np.histogram(flat, bins=40)
                ax.stairs(counts, edges, fill=True, color="tab:orange" if biases else "tab:blue")
            else:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="gray")
            kind = "biases" if biases else "weights"
            ax.set_title(f"{layer.name}: {kind} ({flat.size:,})", fontsize=9)
            ax.set_yticks([])  # counts say little; fewer labels draw faster
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.tick_params(labelsize=7)
    return _save(
        fig,
        out_dir / "weight_distributions.png",
        left=0.04,
        bottom=0.3 / height,
        top=1 - 0.35 / height,
        hspace=0.8,
    )


def health_components(components: Mapping[str, float], score: float | None, out_dir: Path) -> Path:
    """The health mode's components in [0, 1] (1 = healthy) and, when given, their weighted score."""
    names = list(components)
    values = [components[name] for name in names]
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    ax.bar(names, values, color=[(1 - v, 0.6 * v + 0.2, 0.2) for v in np.clip(values, 0, 1)])
    if score is not None:
        ax.axhline(score, color="black", linestyle="--", linewidth=1, label=f"health score {score:.3f}")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelsize=8)
    ax.set(ylabel="component (1 = healthy)", title="health components")
    return _save(fig, out_dir / "health_components.png")
