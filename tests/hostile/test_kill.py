"""``kill -9`` in the middle of a command, then the rerun: it completes and nothing is corrupt (issue 11).

Each case starts a ``ctseg`` command as a subprocess (``python -m ctseg_helpers``), kills it with
SIGKILL (no handler runs, as in a power cut or the out-of-memory killer) once it has made
progress, and runs it again with its resume option, or plainly where it resumes on its own. The
rerun must finish, every file must be readable, the results must equal those of an
uninterrupted run (the tiny models here map each pixel value to a known class, so the expected
labels are computed directly), and at most the epoch or slab in progress is done again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctseg_helpers.io.written import MANIFEST_NAME, written_by_ctseg

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 (SIGKILL) is POSIX only"),
]

REPO = Path(__file__).resolve().parents[2]


def _ctseg(*args) -> list[str]:
    return [sys.executable, "-m", "ctseg_helpers", *map(str, args)]


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command to its end; its output as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_env())


def _kill_when(args, log: Path, ready, *, timeout: float = 120) -> str:
    """Start ``args``, SIGKILL it as soon as ``ready()`` is true and return its output so far.

    Fails when the command ends (or takes ``timeout`` s) before it is ready to be killed.
    """
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=_env())
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"{args[3]} ended (status {proc.poll()}) or timed out before it could be killed:\n"
                        f"{log.read_text()[-3000:]}"
                    )
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return log.read_text()


def _no_traceback(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    return output


def _expected_labels(hu: np.ndarray) -> np.ndarray:
    """What the tiny model (tests/segment/tiny_model.py, CT window -500..500) gives: 1 above -150 HU, 2 above 150."""
    return ((hu > -150).astype(np.uint8) + (hu > 150)).astype(np.uint8)


def _hu(shape, seed=0) -> np.ndarray:
    """HU from -400 to 392 in steps of 8: never exactly on the tiny model's class boundaries."""
    return (np.random.default_rng(seed).integers(0, 100, shape) * 8 - 400).astype(np.int16)


# ------------------------------------------------------------------ training
def _epochs_in(history: Path) -> int:
    """Epochs in the history CSV (0 while there is none); it is replaced atomically, so always whole."""
    try:
        return max(len(history.read_text().strip().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def test_training_killed_resumes_losing_at_most_the_epoch_in_progress(tmp_path):
    import pandas as pd

    from ctseg_helpers.demo.phantom import make_phantom_dataset
    from ctseg_helpers.model.settings import load_model, read_settings

    make_phantom_dataset(tmp_path / "data", n_train=8, n_test=1, size=64, slices_per_patient=4)
    out = tmp_path / "out"
    args = _ctseg(
        "train",
        tmp_path / "data",
        "--out",
        out,
        "--name",
        "unet",
        "--num-labels",
        6,
        "--input-shape",
        32,
        "--levels",
        2,
        "--base-filters",
        4,
        "--batch-size",
        4,
        "--batches-per-epoch",
        3,
        "--print-checkpoint",
        1,
        "--save-checkpoint",
        1000,
        "--no-augment",
        "--devices",
        "cpu",
        "--mixed-precision",
        "off",
    )
    history, state = out / "unet_history.csv", out / "unet_last.keras"
    # killed in the middle of training, once the state after an epoch is saved (a kill in the first
    # epoch, before any state is saved, leaves nothing to resume from: the rerun needs --overwrite)
    _kill_when(
        [*args, "--epochs", "1000"], tmp_path / "killed.log", lambda: state.exists() and _epochs_in(history) >= 1
    )
    done = _epochs_in(history)
    epochs = done + 2  # the resumed run trains two epochs more than the history holds

    resumed = _run([*args, "--epochs", str(epochs), "--resume"])
    output = _no_traceback(resumed)
    assert resumed.returncode == 0, output[-3000:]
    start = int(re.search(rf"Resuming from unet_\w+\.keras: (\d+)/{epochs} epochs completed", output).group(1))
    assert done - 1 <= start <= done  # at most the epoch in progress (history written, state not yet) again
    assert f"Completed epochs: {epochs}/{epochs}" in output

    table = pd.read_csv(history)
    assert table["epoch"].tolist() == list(range(1, epochs + 1))  # each epoch once, none lost
    assert np.isfinite(table["loss"]).all()
    for name in ("unet_best.keras", "unet_last.keras", f"unet_{epochs}.keras"):
        assert read_settings(out / name).extra["epochs_trained"] == epochs
        assert written_by_ctseg(out / name)
    model, settings = load_model(out / "unet_best.keras")
    assert settings.num_labels == 6 and model.output_shape[-1] == 7
    # no half-written file left behind (a copy of the record of what ctseg wrote, killed while it was
    # being replaced, may be: .ctseg-written.json.<pid>.tmp, hidden and never read)
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name and not p.name.startswith(MANIFEST_NAME)]


# ------------------------------------------------------------------ segmenting a DICOM folder
def _run_files(run_dir: Path, *, exclude=()) -> list[str]:
    return sorted(
        p.relative_to(run_dir).as_posix()
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME and p.name not in exclude
    )


def test_segmentation_killed_then_rerun_anew_or_with_overwrite_replacing_only_its_files(tmp_path):
    from PIL import Image

    from ctseg_helpers.io.dicom_write import write_dicom_series
    from tests.segment.tiny_model import make_tiny_model_file

    model = make_tiny_model_file(tmp_path / "tiny.keras", input_shape=32)
    hu = _hu((40, 64, 64))
    names = [f"IM_{k:04d}" for k in range(1, len(hu) + 1)]
    write_dicom_series(
        tmp_path / "scan", hu.astype(float), pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=2.0, names=names
    )
    out = tmp_path / "predictions"
    run_dir = out / "r"
    args = _ctseg("segment", model, tmp_path / "scan", "--out", out, "--name", "r", "--overwrite")
    _kill_when(args, tmp_path / "killed.log", lambda: any((run_dir / "labels").glob("[!.]*.png")))
    assert not (run_dir / "run.json").exists()  # killed before the end: a partial run folder
    partial = _run_files(run_dir)
    # each file in place is whole and recorded as ctseg's; a file being written has a hidden name
    placed = [name for name in partial if not Path(name).name.startswith(".")]
    assert placed and all(written_by_ctseg(run_dir / name) for name in placed)
    (run_dir / "my_notes.txt").write_text("mine")

    # without --overwrite: a run folder of its own, the partial one left as it is
    rerun = _ctseg("segment", model, tmp_path / "scan", "--out", out, "--name", "r", "--no-animation")
    plain = _run(rerun)
    assert plain.returncode == 0, _no_traceback(plain)[-3000:]
    (stamped,) = [p for p in out.iterdir() if p.name.startswith("r_")]
    assert (stamped / "run.json").is_file() and _run_files(run_dir, exclude=("my_notes.txt",)) == partial

    # with --overwrite: the killed run's files are replaced, the user's file stays
    again = _run([*rerun, "--overwrite"])
    assert again.returncode == 0, _no_traceback(again)[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert sorted(record["files"]) == _run_files(run_dir, exclude=("my_notes.txt",))
    assert (run_dir / "my_notes.txt").read_text() == "mine"
    assert len(list((run_dir / "labels").glob("*.png"))) == len(hu)
    for folder in (run_dir, stamped):
        for name, slice_hu in zip(names, hu, strict=True):
            with Image.open(folder / "labels" / f"{name}.png") as image:
                np.testing.assert_array_equal(np.asarray(image), _expected_labels(slice_hu))


# ------------------------------------------------------------------ converting to HDF5
def test_conversion_killed_is_rerun_to_the_whole_volume(tmp_path):
    import h5py

    from ctseg_helpers.io.dicom_write import write_dicom_series

    hu = _hu((300, 128, 128))
    write_dicom_series(tmp_path / "scan", hu.astype(float), pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=2.0)
    out_h5 = tmp_path / "scan.h5"
    args = _ctseg(
        "convert",
        tmp_path / "scan",
        out_h5,
        "--max-gb",
        "0.0001",
        "--chunk-shape",
        "1,128,128",
        "--compression",
        "none",
    )

    def partial_written():
        # The conversion writes beside the output under a hidden name and renames it when complete.
        # Killed as soon as that file exists: HDF5 holds the written chunks in its 64 MB cache and
        # writes them out only at close, so "the file has grown" would be true only in the last
        # few milliseconds before the rename, a race the killer can lose on a busy machine.
        return any(tmp_path.glob(".*.scan.h5"))

    _kill_when(args, tmp_path / "killed.log", partial_written)
    assert not out_h5.exists()  # a killed conversion leaves no damaged scan.h5 behind

    rerun = _run(args)
    assert rerun.returncode == 0, _no_traceback(rerun)[-3000:]
    with h5py.File(out_h5, "r") as h5:
        assert h5["data"].shape == hu.shape
        np.testing.assert_array_equal(h5["data"][:], hu)
    assert written_by_ctseg(out_h5)
    assert sorted(p.name for p in tmp_path.glob(".*.scan.h5")) == []  # the killed run's partial file is gone


# ------------------------------------------------------------------ segmenting an HDF5 volume
_PROGRESS = re.compile(r"axis 0:\s+\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")


def _slabs_done(log: Path) -> int:
    """Slabs the progress bar of ``segment-volume`` reports done (0 before it shows)."""
    found = _PROGRESS.findall(log.read_text(errors="replace"))
    return int(found[-1][0]) if found else 0


def test_volume_segmentation_killed_resumes_redoing_at_most_the_slab_in_progress(tmp_path):
    import h5py

    from ctseg_helpers.io.datafile import DataFile
    from tests.segment.tiny_model import make_tiny_model_file

    model = make_tiny_model_file(tmp_path / "tiny.keras", input_shape=16, fit_mode="pad")
    hu = _hu((240, 96, 96))
    with DataFile.create(tmp_path / "ct.h5", hu.shape, hu.dtype, chunk_shape=(1, 96, 96)) as source:
        source.write_block((0, 0, 0), hu)
    out_h5 = tmp_path / "labels.h5"
    args = _ctseg("segment-volume", model, tmp_path / "ct.h5", out_h5, "--max-gb", "0.0007")
    log = tmp_path / "killed.log"
    killed = _kill_when(args, log, lambda: _slabs_done(log) >= 2)
    seen = _slabs_done(log)
    total, thickness = map(int, re.search(r"axis 0: (\d+) slabs of up to (\d+) slices", killed).groups())
    assert seen < total

    rerun = _run(args)
    output = _no_traceback(rerun)
    assert rerun.returncode == 0, output[-3000:]
    assert "resuming the interrupted run" in output
    slabs, skipped = map(int, re.search(r"(\d+) slab\(s\) segmented, (\d+) slice\(s\) already done", output).groups())
    assert skipped >= seen * thickness  # every slab finished before the kill is kept ...
    assert slabs <= total - seen  # ... and not segmented again
    with h5py.File(out_h5, "r") as h5:
        assert h5.attrs["complete"] and h5["labels"].shape == hu.shape
        np.testing.assert_array_equal(h5["labels"][:], _expected_labels(hu))
    assert written_by_ctseg(out_h5)
