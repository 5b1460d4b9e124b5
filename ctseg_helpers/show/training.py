"""Figures for training: the first augmented batch with its ROIs, and the training curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ctseg_helpers.show.colors import legend_handles, overlay


def show_batch(
    images,
    labels,
    label_names=(),
    num_labels: int | None = None,
    max_images: int = 8,
    columns: int = 4,
    title: str | None = None,
):
    """Show a batch of network inputs with their label maps overlaid.

    Parameters
    ----------
    images : ndarray of shape (B, M, N) or (B, M, N, 1), float
        Network inputs (normalised, augmented).
    labels : ndarray of shape (B, M, N), integer dtype
        Label maps; every label value always gets the same colour (``show.colors``).
    label_names : sequence of str, optional
        Names of labels 1, 2, ... for the legend.
    num_labels : int, optional
        Number of ROIs for the legend when no names are given.
    max_images : int
        Show at most this many examples.
    columns : int
    title : str, optional
    loss_label : str
        What the loss is called on its axis (``"Dice+CE loss"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    labels = np.asarray(labels)
    count = min(len(images), max_images)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(overlay(images[i], labels[i]), interpolation="nearest")
            values = [int(v) for v in np.unique(labels[i]) if v > 0]
            ax.set_title(f"#{i}  labels {values}", fontsize=9)
    n_labels = num_labels or int(labels.max(initial=0))
    names = list(label_names) if label_names else [f"label {k}" for k in range(1, n_labels + 1)]
    if names:
        fig.legend(handles=legend_handles(names), loc="lower center", ncol=min(len(names), 6), frameon=False)
    fig.suptitle(
        title or f"First training batch: images {tuple(images.shape)}, labels {tuple(labels.shape)}", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def plot_history(history, path: str | Path | None = None, title: str | None = None, loss_label: str = "Loss"):
    """Plot the loss and the mean Dice per epoch, training and validation.

    Parameters
    ----------
    history : pandas.DataFrame
        One row per epoch with columns ``epoch``, ``loss``, ``mean_dice`` and, when there was
        validation data, ``val_loss`` and ``val_mean_dice`` (the ``*_history.csv`` file).
    path : path, optional
        Also save the figure there as PNG.
    title : str, optional
    loss_label : str
        What the loss is called on its axis (``"Dice+CE loss"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for ax, key in ((ax_loss, "loss"), (ax_dice, "mean_dice")):
        if key in history:
            ax.plot(epochs, history[key], label="training", color="tab:blue")
        if f"val_{key}" in history and history[f"val_{key}"].notna().any():
            ax.plot(epochs, history[f"val_{key}"], label="validation", color="tab:orange")
    _style_axes(ax_loss, ax_dice, loss_label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_result(result, path: str | Path | None = None):
    """Training curves of a :class:`~ctseg_helpers.train.TrainResult`: one run, or every fold.

    A single run is drawn by :func:`plot_history`; a K-fold run draws each fold's training loss
    and validation Dice in one figure, so the folds can be compared.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if not result.fold_results:
        return plot_history(result.history, path, loss_label=result.loss_label)
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    for k, fold in enumerate(result.fold_results):
        history = fold.history
        if history is None or not len(history):
            continue
        ax_loss.plot(history["epoch"], history["loss"], label=f"fold {k} training")
        if "val_mean_dice" in history:
            ax_dice.plot(history["epoch"], history["val_mean_dice"], label=f"fold {k} validation")
    _style_axes(ax_loss, ax_dice, result.loss_label)
    fig.suptitle(f"{len(result.fold_results)} folds")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _style_axes(ax_loss, ax_dice, loss_label: str) -> None:
    """Whole-epoch ticks, axis labels, grid and legend of the loss and Dice panels."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    for ax, label in ((ax_loss, loss_label), (ax_dice, "Mean Dice score")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_dice.set_ylim(0, 1)
