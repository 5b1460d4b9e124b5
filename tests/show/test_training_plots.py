"""Training curves of one run and of K folds: loss axis named after the loss, whole-epoch ticks."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd

from ctseg_helpers.show.training import plot_history, plot_result


def _history(n=4, offset=0.0):
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "loss": [2.0 - 0.3 * i + offset for i in range(n)],
            "mean_dice": [0.2 * i for i in range(n)],
            "val_mean_dice": [0.1 * i for i in range(n)],
        }
    )


def test_one_run_names_its_loss_and_ticks_whole_epochs(tmp_path):
    fig = plot_history(_history(), tmp_path / "c.png", loss_label="Dice+CE loss")
    ax_loss, ax_dice = fig.axes
    assert ax_loss.get_ylabel() == "Dice+CE loss" and ax_dice.get_ylabel() == "Mean Dice score"
    assert all(float(t).is_integer() for t in ax_loss.get_xticks())
    assert (tmp_path / "c.png").is_file()
    plt.close(fig)


def test_a_k_fold_result_draws_every_fold():
    folds = [
        SimpleNamespace(history=_history(), loss_label="Focal loss"),
        SimpleNamespace(history=_history(3, 0.1), loss_label="Focal loss"),
    ]
    result = SimpleNamespace(fold_results=folds, loss_label="Focal loss", history=None)
    fig = plot_result(result)
    ax_loss, ax_dice = fig.axes
    assert [line.get_label() for line in ax_loss.lines] == ["fold 0 training", "fold 1 training"]
    assert [line.get_label() for line in ax_dice.lines] == ["fold 0 validation", "fold 1 validation"]
    assert ax_loss.get_ylabel() == "Focal loss" and fig._suptitle.get_text() == "2 folds"
    plt.close(fig)
    single = plot_result(SimpleNamespace(fold_results=[], loss_label="Dice loss", history=_history()))
    assert single.axes[0].get_ylabel() == "Dice loss"
    plt.close(single)
