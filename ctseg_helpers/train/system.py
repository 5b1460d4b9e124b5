"""What the machine offers for training: memory, GPU, and the precision to train in.

On a CPU-only machine the report says ``GPU enabled: False`` and nothing about GPU memory.
Mixed precision (float16 compute, float32 weights) pays on a GPU; on a CPU only where it has
bfloat16 matrix units (Intel AMX / AVX-512-BF16: U-Net training 12.6 vs 7.9 images/s measured
on a 2-core Xeon), while elsewhere it makes training slower (bf16 7x slower on an AMD EPYC).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemInfo:
    """Resources available for training.

    Attributes
    ----------
    ram_total_gb, ram_available_gb : float
        System memory, gigabytes (10**9 bytes).
    cpu_name : str
    cpu_count : int
        Logical CPU cores TensorFlow can use.
    gpu_enabled : bool
        True when TensorFlow sees at least one GPU.
    device_name : str
        The GPU's name, or the CPU's when there is no GPU.
    gpu_memory_total_mb, gpu_memory_used_mb, gpu_memory_free_mb : float or None
        Memory of the first GPU in megabytes (from ``nvidia-smi`` when available, otherwise
        TensorFlow's own usage and no total); None without a GPU.
    """

    ram_total_gb: float
    ram_available_gb: float
    cpu_name: str
    cpu_count: int
    gpu_enabled: bool
    device_name: str
    gpu_memory_total_mb: float | None = None
    gpu_memory_used_mb: float | None = None
    gpu_memory_free_mb: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [
            f"RAM available: {self.ram_available_gb:.1f} GB of {self.ram_total_gb:.1f} GB",
            f"CPU: {self.cpu_name} ({self.cpu_count} cores)",
            f"GPU enabled: {self.gpu_enabled}",
        ]
        if self.gpu_enabled:
            lines.append(f"Device name: {self.device_name}")

            def mb(value):
                return "unknown" if value is None else f"{value:.0f} MB"

            lines.append(
                f"GPU memory total: {mb(self.gpu_memory_total_mb)} | used: "
                f"{mb(self.gpu_memory_used_mb)} | free: {mb(self.gpu_memory_free_mb)}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # notebooks show the same lines
        return "<pre>" + str(self) + "</pre>"

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's plain-text display
        printer.text(str(self))


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), or the platform's description."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform  # noqa: PLC0415

    return platform.processor() or platform.machine() or "unknown CPU"


def parse_nvidia_smi(text: str) -> list[dict]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,memory.used,memory.free
    --format=csv,noheader,nounits`` output into one dict per GPU (memory in MB)."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            total, used, free = (float(v) for v in parts[1:])
        except ValueError:
            continue
        gpus.append({"name": parts[0], "total_mb": total, "used_mb": used, "free_mb": free})
    return gpus


def _nvidia_smi() -> list[dict]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi failed: %s", exc)
        return []
    return parse_nvidia_smi(out)


def system_info() -> SystemInfo:
    """Report RAM, CPU and GPU as TensorFlow sees them (imports TensorFlow)."""
    import psutil  # noqa: PLC0415

    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    memory = psutil.virtual_memory()
    gpus = tf.config.list_physical_devices("GPU")
    cpu = cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    base = dict(ram_total_gb=memory.total / 1e9, ram_available_gb=memory.available / 1e9, cpu_name=cpu, cpu_count=cores)
    if not gpus:
        return SystemInfo(**base, gpu_enabled=False, device_name=cpu)
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    smi = _nvidia_smi()
    if smi:
        first = smi[0]
        return SystemInfo(
            **base,
            gpu_enabled=True,
            device_name=first["name"] or name,
            gpu_memory_total_mb=first["total_mb"],
            gpu_memory_used_mb=first["used_mb"],
            gpu_memory_free_mb=first["free_mb"],
        )
    try:
        used = tf.config.experimental.get_memory_info("GPU:0")["current"] / 1e6
    except (ValueError, RuntimeError):
        used = None
    return SystemInfo(**base, gpu_enabled=True, device_name=name, gpu_memory_used_mb=used)


def cpu_has_bf16() -> bool:
    """True when the CPU has bfloat16 matrix instructions (``amx_bf16`` or ``avx512_bf16`` flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def choose_precision(mixed_precision, gpu: bool, bf16_cpu: bool) -> tuple[str, str | None]:
    """The Keras dtype policy for a request, and a warning to log (or None).

    >>> choose_precision("auto", gpu=False, bf16_cpu=True)
    ('mixed_bfloat16', None)
    >>> choose_precision("auto", gpu=False, bf16_cpu=False)
    ('float32', None)
    """
    if mixed_precision is False:
        return "float32", None
    if gpu:
        return "mixed_float16", None
    if bf16_cpu:
        return "mixed_bfloat16", None
    if mixed_precision == "auto":
        return "float32", None
    return "float32", (
        "mixed precision was requested but there is no GPU and the CPU has no bfloat16 units; "
        "training in float32 (reduced precision is much slower on such a CPU)"
    )


def configure_precision(mixed_precision) -> str:
    """Set Keras' global dtype policy for training and return its name.

    Parameters
    ----------
    mixed_precision : bool or "auto"
        True / "auto": ``"mixed_float16"`` on a GPU, ``"mixed_bfloat16"`` on a CPU with bfloat16
        units (AMX / AVX-512-BF16); otherwise ``"float32"`` (True logs a warning then). False:
        always ``"float32"``. The network's output layer stays float32 either way.

    Returns
    -------
    str
        The policy now in force.
    """
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    tf = configure_tensorflow()
    import keras  # noqa: PLC0415

    gpu = bool(tf.config.list_physical_devices("GPU"))
    policy, warning = choose_precision(mixed_precision, gpu, cpu_has_bf16())
    if warning:
        logger.warning(warning)
    keras.mixed_precision.set_global_policy(policy)
    return policy
