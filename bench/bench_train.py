"""Training throughput: ctseg's tf.data pipeline with augmentation against two baselines.

Usage (from the repository root)::

    .venv/bin/python bench/bench_train.py [--input-shape 256] [--epochs 2] [--rounds 2]

One process, one model (the default U-Net), three ways of feeding it, interleaved in rounds so
that load from other jobs on a shared machine falls on all three alike:

``in-memory``
    ``model.fit(x, y)`` on arrays already normalised and resized, no augmentation: the
    ceiling for any input pipeline.
``ctseg pipeline``
    :func:`ctseg_helpers.prepare.dataset.make_dataset` with the default augmentation
    (parallel map + prefetch). Goal: >= 0.9 x in-memory.
``per-file PyDataset``
    a ``keras.utils.PyDataset`` that reads, normalises and resizes each batch's DICOM and
    label files in ``__getitem__``, as in the liver-segmentation tutorial (no augmentation).
    Goal: ctseg pipeline >= 1.5 x this.

It also times the ctseg pipeline alone (no model) to show how much headroom augmentation has.
Data: Sunnybrook ``lv_myo`` from ``../shared/datasets`` (or ``--data``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: E402

tf = configure_tensorflow()
import keras  # noqa: E402

from ctseg_helpers.io.labels import find_pairs, read_pair  # noqa: E402
from ctseg_helpers.model.losses import default_metrics, get_loss  # noqa: E402
from ctseg_helpers.model.unet import build_unet  # noqa: E402
from ctseg_helpers.prepare.augment import AugmentConfig  # noqa: E402
from ctseg_helpers.prepare.dataset import fit_image, fit_label, load_slices, make_dataset  # noqa: E402
from ctseg_helpers.prepare.normalize import Normalization, normalize_image  # noqa: E402
from ctseg_helpers.train.system import cpu_name  # noqa: E402


class PerFileDataset(keras.utils.PyDataset):
    """Reads each batch's files from disk on demand, like the liver tutorial's loader."""

    def __init__(self, pairs, batch_size, input_shape, num_labels, **kwargs):
        super().__init__(**kwargs)
        self.pairs, self.batch_size = list(pairs), batch_size
        self.input_shape, self.num_labels = input_shape, num_labels
        self.order = np.arange(len(self.pairs))

    def __len__(self):
        return math.ceil(len(self.pairs) / self.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, labels = [], []
        for i in chosen:
            dicom, label = read_pair(self.pairs[i], self.num_labels)
            norm = Normalization.for_modality(dicom.modality)
            images.append(fit_image(normalize_image(dicom.pixels, norm), self.input_shape))
            labels.append(fit_label(label, self.input_shape))
        return np.stack(images)[..., None], np.stack(labels)

    def on_epoch_end(self):
        np.random.shuffle(self.order)


def images_per_second(fit, n_images: int) -> float:
    start = time.perf_counter()
    fit()
    return n_images / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sunnybrook" / "lv_myo"))
    parser.add_argument("--input-shape", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three feeders")
    args = parser.parse_args()

    split = Path(args.data) / "train"
    slices = load_slices(split, args.input_shape, 2, progress=False)
    pairs = find_pairs(split)
    n = len(slices)
    keras.utils.set_random_seed(0)
    model = build_unet(args.input_shape, 2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("dice_ce"), metrics=default_metrics(2), jit_compile=False
    )
    x, y = slices.images[..., None], slices.labels
    pipeline = make_dataset(slices.images, slices.labels, args.batch_size, augment=AugmentConfig(), seed=0)
    per_file = PerFileDataset(pairs, args.batch_size, args.input_shape, 2)

    feeders = {
        "in-memory, no augmentation": lambda: model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0
        ),
        "ctseg pipeline, augmentation": lambda: model.fit(pipeline, epochs=args.epochs, verbose=0, shuffle=False),
        "per-file PyDataset, no augmentation": lambda: model.fit(
            per_file, epochs=args.epochs, verbose=0, shuffle=False
        ),
    }
    # Warm-up of each feeder: tracing, oneDNN kernel selection, file cache.
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    model.fit(pipeline, epochs=1, verbose=0, shuffle=False)
    model.fit(per_file, epochs=1, verbose=0, shuffle=False)

    rates = {name: [] for name in feeders}
    for _ in range(args.rounds):
        for name, fit in feeders.items():
            rates[name].append(images_per_second(fit, n * args.epochs))

    def pipeline_alone():
        for _ in range(3):
            for _batch in pipeline:
                pass

    def per_file_alone():
        for _ in range(3):
            for i in range(len(per_file)):
                per_file[i]
            per_file.on_epoch_end()

    alone = images_per_second(pipeline_alone, 3 * n)
    per_file_loader = images_per_second(per_file_alone, 3 * n)
    names = list(feeders)
    # Ratios within each round (same load on the machine), then their median.
    vs_memory = [a / b for a, b in zip(rates[names[1]], rates[names[0]], strict=True)]
    vs_per_file = [a / b for a, b in zip(rates[names[1]], rates[names[2]], strict=True)]
    median = {name: statistics.median(values) for name, values in rates.items()}
    memory, ours, per_file_rate = (median[name] for name in names)
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {platform.machine()}, no GPU"
        if not tf.config.list_physical_devices("GPU")
        else "GPU",
        "data": f"{split} ({n} slices), input {args.input_shape}x{args.input_shape}, batch {args.batch_size}",
        "model_parameters": model.count_params(),
        "epochs_per_run": args.epochs,
        "rounds": args.rounds,
        "images_per_s": {name: [round(v, 2) for v in values] for name, values in rates.items()},
        "median_images_per_s": {name: round(v, 2) for name, v in median.items()},
        "ratio_pipeline_vs_in_memory_per_round": [round(v, 3) for v in vs_memory],
        "ratio_pipeline_vs_per_file_per_round": [round(v, 3) for v in vs_per_file],
        "loader_alone_images_per_s": {
            "ctseg pipeline, augmentation": round(alone, 1),
            "per-file PyDataset, no augmentation": round(per_file_loader, 1),
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"ctseg pipeline with augmentation / in-memory without: median {statistics.median(vs_memory):.2f} "
        f"(goal >= 0.9); ratio of medians {ours / memory:.2f}"
    )
    print(
        f"ctseg pipeline with augmentation / per-file PyDataset: median {statistics.median(vs_per_file):.2f} "
        f"(goal >= 1.5); ratio of medians {ours / per_file_rate:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
