"""QC figures: what they draw comes from the measure modules; check content, not pixels."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.io.written import MANIFEST_NAME, written_by_ctseg
from ctseg_helpers.measure.evaluation import area_jumps, summarize_metrics
from ctseg_helpers.measure.metrics import METRIC_NAMES
from ctseg_helpers.show import plots


def _metrics():
    rows = []
    manual = [100.0, 200.0, 300.0, 400.0]
    predicted = [102.0, 198.0, 306.0, 402.0]
    for k, (m, p) in enumerate(zip(manual, predicted, strict=True)):
        rows.append(
            {
                "file": f"s{k}",
                "roi": "liver",
                "truth_area_mm2": m,
                "pred_area_mm2": p,
                **{name: 0.9 for name in METRIC_NAMES},
            }
        )
        rows.append(
            {
                "file": f"s{k}",
                "roi": "spleen",
                "truth_area_mm2": 50.0 if k == 0 else 0.0,
                "pred_area_mm2": 40.0 if k == 0 else 0.0,
                **{name: np.nan for name in METRIC_NAMES},
            }
        )
    return pd.DataFrame(rows)


def test_bland_altman_figure_draws_bias_and_limits():
    fig = plots.bland_altman_figure(_metrics(), label_names=["liver", "spleen"])
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4
    liver_ba = axes[2]
    levels = sorted(line.get_ydata()[0] for line in liver_ba.get_lines())
    sd = np.std([2, -2, 6, 2], ddof=1)
    np.testing.assert_allclose(levels, sorted([2.0, 2.0 + 1.959964 * sd, 2.0 - 1.959964 * sd, 0.0]), rtol=1e-6)
    offsets = liver_ba.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 1], [2, -2, 6, 2])
    assert "r = " in axes[0].get_title() and "n = 4" in axes[0].get_title()
    # spleen shows on one slice only: a note, no plot
    assert "fewer than 2 slices" in axes[1].texts[0].get_text()


def test_bland_altman_needs_area_columns():
    with pytest.raises(CtsegDataError, match="needs the columns"):
        plots.bland_altman_figure(pd.DataFrame({"roi": ["a"]}))


def test_save_figure_never_overwrites(tmp_path):
    fig = plots.bland_altman_figure(_metrics())
    path = plots.save_figure(fig, tmp_path / "sub" / "ba.png")
    assert path.stat().st_size > 1000 and written_by_ctseg(path)
    with pytest.raises(
        CtsegDataError,
        match=r"ba.png exists already; choose another file name or allow "
        r"overwriting \(overwrite=True\)",
    ):
        plots.save_figure(fig, path)
    plots.save_figure(fig, path, overwrite=True)  # ctseg's own, unchanged: replaced
    assert written_by_ctseg(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [MANIFEST_NAME, "ba.png"]  # nothing half-written left


def test_a_save_that_fails_half_way_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    fig = plots.bland_altman_figure(_metrics())
    path = plots.save_figure(fig, tmp_path / "ba.png")
    before = path.read_bytes()

    def disk_full(target, **kwargs):
        Path(target).write_bytes(b"half a figure")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fig, "savefig", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        plots.save_figure(fig, path, overwrite=True)
    assert path.read_bytes() == before and written_by_ctseg(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "ba.png"]


def test_save_figure_with_overwrite_never_replaces_a_users_or_a_changed_file(tmp_path):
    fig = plots.bland_altman_figure(_metrics())
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my own figure")
    with pytest.raises(
        CtsegDataError,
        match="mine.png: not written by ctseg; ctseg never replaces such files, even "
        r"with --overwrite \(overwrite=True\): move it away or choose another "
        "file name",
    ):
        plots.save_figure(fig, mine, overwrite=True)
    assert mine.read_bytes() == b"my own figure"
    saved = plots.save_figure(fig, tmp_path / "ba.svg")
    with saved.open("a") as f:
        f.write("<!-- annotated by hand -->")
    edited = saved.read_bytes()
    with pytest.raises(CtsegDataError, match="ba.svg: changed since ctseg wrote it"):
        plots.save_figure(fig, saved, overwrite=True)
    assert saved.read_bytes() == edited


def test_save_figure_needs_a_format_matplotlib_writes(tmp_path):
    fig = plots.bland_altman_figure(_metrics())
    for name in ("ba.docx", "ba"):
        with pytest.raises(
            CtsegDataError,
            match=rf"{name}: a figure is saved as one of .*\.pdf.*\.png.*; end the "
            "file name with one of them",
        ):
            plots.save_figure(fig, tmp_path / name)
    with pytest.raises(CtsegDataError, match="ba.docx: a figure is saved as one of"):
        plots.save_outputs(tmp_path / "out", figures={"ok.png": fig, "ba.docx": fig}, tables={"t.csv": _metrics()})
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_intensity_histogram_ct_axis_and_roi_curves():
    images = np.full((2, 8, 8), -1000.0)
    labels = np.zeros((2, 8, 8), np.uint8)
    images[:, 2:6, 2:6] = 40.0
    labels[:, 2:6, 2:6] = 1
    fig = plots.intensity_histogram(images, "CT", labels, ["muscle"], bins=20)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Hounsfield units (HU)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["all pixels", "muscle"]
    heights = [p.get_height() for p in ax.patches[:20]]
    assert sum(heights) == images.size
    mr = plots.intensity_histogram(images[0], "MR")
    assert "MR units" in mr.axes[0].get_xlabel()


def test_intensity_histogram_errors():
    with pytest.raises(CtsegDataError, match="no image values"):
        plots.intensity_histogram(np.zeros((0, 4, 4)))
    with pytest.raises(CtsegDataError, match="bins must be at least 2"):
        plots.intensity_histogram(np.zeros((1, 4, 4)), bins=1)
    with pytest.raises(CtsegDataError, match="must have the same shape"):
        plots.intensity_histogram(np.zeros((1, 4, 4)), labels=np.zeros((1, 4, 5)))


def test_sample_indices_and_grid():
    assert plots.sample_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert plots.sample_indices(3, 12).tolist() == [0, 1, 2]
    images = np.random.default_rng(0).normal(size=(5, 16, 16))
    labels = np.zeros((5, 16, 16), np.uint8)
    labels[:, 4:8, 4:8] = 1
    fig = plots.sample_stack_grid(images, labels, ["roi"], n_samples=3, columns=2, titles=[f"f{k}" for k in range(5)])
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["f0", "f2", "f4"]
    assert shown[0].images[0].get_array().shape == (16, 16, 3)
    with pytest.raises(CtsegDataError, match=r"stack of shape \(K, M, N\)"):
        plots.sample_stack_grid(np.zeros((16, 16)))
    with pytest.raises(CtsegDataError, match="must have the same shape"):
        plots.sample_stack_grid(images, labels[:2])


def test_grid_panels_name_the_slice_number_and_the_file():
    images = np.zeros((5, 8, 8))
    # DICOM stems are often digits: the title says which is the slice number and which the file
    fig = plots.sample_stack_grid(images, n_samples=3, file_names=["0007", "0008", "0009", "0010", "0011"])
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["slice 1 / 5\nfile: 0007", "slice 3 / 5\nfile: 0009", "slice 5 / 5\nfile: 0011"]
    # numbered from 1, as the slice browser counts
    assert [ax.get_title() for ax in plots.sample_stack_grid(images, n_samples=2).axes if ax.images] == [
        "slice 1 / 5",
        "slice 5 / 5",
    ]
    # titles, when given, are the whole title (the slices to check of a segmentation run)
    fig = plots.sample_stack_grid(images, n_samples=1, titles=list("abcde"), file_names=list("vwxyz"))
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a"]
    with pytest.raises(CtsegDataError, match=r"file_names must give one entry per slice \(5\), got 2"):
        plots.sample_stack_grid(images, file_names=["a", "b"])
    with pytest.raises(CtsegDataError, match=r"titles must give one entry per slice \(5\), got 4"):
        plots.sample_stack_grid(images, titles=list("abcd"))


def test_area_vs_slice_marks_jumps():
    area = np.array([100.0, 104.0, 10.0, 98.0, 101.0])
    rows = []
    for source, values in (("prediction", area), ("truth", np.full(5, 100.0))):
        flags = area_jumps(values)
        for k in range(5):
            rows.append(
                {"slice_index": k, "group": 0, "source": source, "roi": "lv", "area_mm2": values[k], "jump": flags[k]}
            )
    fig = plots.area_vs_slice_figure(pd.DataFrame(rows), ["lv"])
    ax = fig.axes[0]
    assert ax.get_title() == "lv: 2 abrupt jump(s) flagged"
    marker = [line for line in ax.get_lines() if line.get_marker() == "x"][0]
    assert marker.get_xdata().tolist() == [2, 3]
    assert sorted(t.get_text() for t in ax.texts) == ["2", "3"]
    with pytest.raises(CtsegDataError, match="the areas table needs the columns"):
        plots.area_vs_slice_figure(pd.DataFrame({"roi": ["lv"]}))


def test_metric_table_formats_summary():
    metrics = pd.DataFrame(
        {
            "roi": ["a", "a", "b"],
            "dice": [0.8, 1.0, np.nan],
            **{n: [1.0, 3.0, 2.0] for n in METRIC_NAMES if n != "dice"},
        }
    )
    table = plots.metric_table(summarize_metrics(metrics), metrics=("dice", "hd95"))
    assert table.loc["a", "dice"] == "0.9 ± 0.141 (0.9)"
    assert table.loc["a", "hd95 (mm)"] == "2 ± 1.41 (2)"
    assert table.loc["b", "dice"] == "– ± – (–)" and table.loc["b", "n"] == 0
    with pytest.raises(CtsegDataError, match="the summary has no metric"):
        plots.metric_table(summarize_metrics(metrics), metrics=("kappa",))
    with pytest.raises(CtsegDataError, match="the summary table needs the columns"):
        plots.metric_table(pd.DataFrame({"roi": []}))


def test_save_outputs_all_or_nothing(tmp_path):
    fig = plots.bland_altman_figure(_metrics())
    table = pd.DataFrame({"a": [1, 2]})
    written = plots.save_outputs(
        tmp_path / "out", figures={"ba.png": fig, "skipped.png": None}, tables={"t.csv": table, "none.csv": None}
    )
    assert [p.name for p in written] == ["ba.png", "t.csv"]
    assert pd.read_csv(tmp_path / "out" / "t.csv")["a"].tolist() == [1, 2]
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "t.csv").write_text("mine")
    with pytest.raises(CtsegDataError, match="t.csv: exists already"):
        plots.save_outputs(tmp_path / "out2", figures={"ba.png": fig}, tables={"t.csv": table})
    assert not (tmp_path / "out2" / "ba.png").exists()
    assert (tmp_path / "out2" / "t.csv").read_text() == "mine"
    # overwrite replaces what save_outputs wrote, never the user's own file
    with pytest.raises(CtsegDataError, match="t.csv: not written by ctseg; ctseg never replaces such files"):
        plots.save_outputs(tmp_path / "out2", figures={"ba.png": fig}, tables={"t.csv": table}, overwrite=True)
    assert (tmp_path / "out2" / "t.csv").read_text() == "mine" and not (tmp_path / "out2" / "ba.png").exists()
    plots.save_outputs(tmp_path / "out", tables={"t.csv": pd.DataFrame({"a": [3]})}, overwrite=True)
    assert pd.read_csv(tmp_path / "out" / "t.csv")["a"].tolist() == [3]
    assert all(written_by_ctseg(p) for p in written)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_NAME, "ba.png", "t.csv"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CtsegDataError, match="is a file, not a folder"):
        plots.save_outputs(tmp_path / "file", tables={"t.csv": table})
