"""Choosing the tf.distribute strategy.

TensorFlow fixes its devices once per process and other tests initialise them early, so the
multi-device training check runs in a fresh Python process with the CPU split in two.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys

import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.tf_setup import configure_tensorflow
from ctseg_helpers.train.distribute import (
    DEVICE_CHOICES,
    describe_strategy,
    get_strategy,
    parse_devices,
    replica_batch_note,
    split_cpu,
)

tf = configure_tensorflow()
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", ("auto", None)),
        ("cpu", ("cpu", None)),
        ("gpu", ("gpu", None)),
        ("cpu:2", ("cpu", 2)),
        ("cpu:1", ("cpu", 1)),
        (" CPU:4 ", ("cpu", 4)),
        ("GPU", ("gpu", None)),
    ],
)
def test_parse_devices_accepts_the_documented_forms(text, expected):
    assert parse_devices(text) == expected


def test_device_choices_lists_the_forms():
    assert DEVICE_CHOICES == ("auto", "cpu", "gpu", "cpu:N")


@pytest.mark.parametrize("text", ["", "tpu", "cpu:", "cpu:0", "cpu:-1", "cpu:two", "gpu:2", "cpu:2:3", "cpu 2"])
def test_parse_devices_refuses_other_strings_and_lists_the_accepted_forms(text):
    accepted = r'use "auto", "cpu", "gpu" or "cpu:N"'
    with pytest.raises(CtsegSettingsError, match=r"unknown devices setting .*" + accepted):
        parse_devices(text)


@pytest.mark.parametrize("value", [None, 2, ("cpu", 2)])
def test_parse_devices_refuses_non_strings(value):
    with pytest.raises(CtsegSettingsError, match=r"devices must be a string, got .*use \"auto\""):
        parse_devices(value)


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "2"])
def test_split_cpu_refuses_a_bad_count(n):
    with pytest.raises(CtsegSettingsError, match=r"number of logical CPU devices must be a whole number >= 1, got"):
        split_cpu(n)


def test_split_cpu_after_initialisation():
    present = len(tf.config.list_logical_devices("CPU"))  # makes sure TensorFlow has set up its devices
    split_cpu(present)  # the count already in force is fine
    with pytest.raises(
        CtsegSettingsError,
        match=rf"devices='cpu:{present + 1}' needs {present + 1} logical CPU "
        r"devices, but TensorFlow has already set up its devices .*"
        r"at the start of the process or kernel",
    ):
        split_cpu(present + 1)
    with pytest.raises(CtsegSettingsError, match="at the start of the process or kernel"):
        get_strategy(f"cpu:{present + 1}")


@pytest.mark.skipif(HAS_GPU, reason="checks the CPU-only machine")
def test_auto_on_a_cpu_machine_is_one_replica(caplog):
    with caplog.at_level(logging.INFO, logger="ctseg_helpers.train.distribute"):
        strategy = get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert describe_strategy(strategy) == "one device (CPU)"
    assert "devices='auto': training on one device (CPU)" in caplog.text


def test_cpu_is_one_device_on_the_cpu():
    strategy = get_strategy("cpu")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    assert describe_strategy(strategy) == "one device (CPU)"


def test_get_strategy_refuses_an_unknown_setting():
    with pytest.raises(CtsegSettingsError, match="unknown devices setting 'all'"):
        get_strategy("all")


@pytest.mark.skipif(HAS_GPU, reason="needs a machine without GPU")
def test_gpu_without_a_gpu_is_refused():
    with pytest.raises(
        CtsegSettingsError,
        match=r"devices='gpu' was requested but TensorFlow sees no GPU; "
        r"use devices='auto' or 'cpu'",
    ):
        get_strategy("gpu")


def test_describe_strategy_names_the_devices():
    class Extended:
        worker_devices = ("/device:GPU:1",)

    class Single:
        num_replicas_in_sync = 1
        extended = Extended()

    class Many:
        num_replicas_in_sync = 8
        extended = None

    assert describe_strategy(Single()) == "one device (GPU:1)"
    assert describe_strategy(Many()) == "Many over 8 replicas"


class _Replicas:
    def __init__(self, n):
        self.num_replicas_in_sync = n


def test_replica_batch_note_splits_the_global_batch(caplog):
    assert replica_batch_note(4, _Replicas(1)) == 4
    assert replica_batch_note(8, _Replicas(2)) == 4
    assert replica_batch_note(2, _Replicas(2)) == 1
    with caplog.at_level(logging.WARNING, logger="ctseg_helpers.train.distribute"):
        assert replica_batch_note(5, _Replicas(2)) == 2
    assert "batch size 5 does not split evenly across 2 replicas: each gets 2 or 3 samples" in caplog.text


def test_replica_batch_note_refuses_a_batch_smaller_than_the_replicas():
    with pytest.raises(
        CtsegSettingsError,
        match=r"batch size 3 is smaller than the 4 replicas of _Replicas over 4 "
        r"replicas; .*use a batch size of at least 4",
    ):
        replica_batch_note(3, _Replicas(4))
    strategy = get_strategy("cpu")
    with pytest.raises(CtsegSettingsError, match="batch size 0 is smaller than the 1 replicas"):
        replica_batch_note(0, strategy)


_TWO_CPU_TRAINING = """
import json
import numpy as np
from ctseg_helpers.train.distribute import split_cpu, get_strategy, describe_strategy, replica_batch_note
split_cpu(2)
strategy = get_strategy("cpu:2")
from ctseg_helpers.tf_setup import configure_tensorflow
tf = configure_tensorflow()
import keras
from ctseg_helpers.model.losses import get_loss
from ctseg_helpers.model.unet import build_unet
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build_unet(32, 1, levels=2, base_filters=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("dice_ce"))
rng = np.random.default_rng(0)
images = rng.random((8, 32, 32, 1), dtype=np.float32)
labels = (rng.random((8, 32, 32)) > 0.5).astype(np.int32)
data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
before = [w.copy() for w in model.get_weights()]
history = model.fit(data, epochs=2, verbose=0)
after = model.get_weights()
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "description": describe_strategy(strategy),
    "per_replica": replica_batch_note(4, strategy),
    "losses": history.history["loss"],
    "changed": any(not np.array_equal(a, b) for a, b in zip(before, after)),
    "split_again": (split_cpu(2) is None),
}))
"""


def test_two_logical_cpus_train_a_mirrored_unet(repo_root):
    path = os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", _TWO_CPU_TRAINING], capture_output=True, text=True, env=env, cwd=repo_root, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["replicas"] == 2
    assert result["description"] == (
        "MirroredStrategy over 2 devices (/job:localhost/replica:0/task:0/device:CPU:0, "
        "/job:localhost/replica:0/task:0/device:CPU:1)"
    )
    assert result["per_replica"] == 2
    assert len(result["losses"]) == 2
    assert all(math.isfinite(loss) for loss in result["losses"])
    assert result["changed"] is True
    assert result["split_again"] is True
