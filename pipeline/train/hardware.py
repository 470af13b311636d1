"""What the training machine has, found without importing TensorFlow, or described by the operator.

``nvidia-smi`` answers in milliseconds, where importing TensorFlow to list GPUs
costs seconds; the catalogue and the bot need the answer before any training.
A described machine (``--assume-hardware gpus=2,memory_gb=80,cc=8.0``) lets a plan
be made, printed and run (emulated on the CPU) for hardware that is not here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from pipeline.errors import UsageError

# Volta (7.0) has float16 tensor cores; bfloat16 needs Ampere (8.0).
FLOAT16_CC, BFLOAT16_CC = 7.0, 8.0
_SPEC_KEYS = {"gpus": int, "memory_gb": float, "cc": float}


@dataclass(frozen=True)
class Hardware:
    gpus: int = 0
    gpu_memory_mb: int = 0  # of the smallest GPU: a mirrored batch must fit on each
    compute_capability: float = 0.0
    cpu_cores: int = 1
    assumed: bool = False  # described with --assume-hardware, not detected

    @property
    def device(self) -> str:
        return device_text(self.device_params)

    @property
    def device_params(self) -> dict:
        """What trains, as data for a reader to word: GPUs (0: the CPU), each one's memory, CPU cores."""
        return {
            "gpus": self.gpus,
            "memory_gb": self.gpu_memory_mb // 1024,
            "cpu_cores": self.cpu_cores,
            "assumed": self.assumed,
        }

    @property
    def precision(self) -> str:
        """Model Garden's ``runtime.mixed_precision_dtype``: the compute dtype of the mixed policy."""
        if not self.gpus:
            return "float32"
        if self.compute_capability >= BFLOAT16_CC:
            return "bfloat16"
        return "float16" if self.compute_capability >= FLOAT16_CC else "float32"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> Hardware:
        return cls(**{key: payload[key] for key in cls.__dataclass_fields__ if key in payload})


def device_text(params: dict) -> str:
    """``Hardware.device_params`` in the CLI's English."""
    if not params["gpus"]:
        return f"CPU ({params['cpu_cores']} cores)"
    text = f"{params['gpus']} GPU{'s' if params['gpus'] > 1 else ''} ({params['memory_gb']} GB each)"
    return f"{text}, assumed" if params["assumed"] else text


def parse_hardware_spec(text: str, cpu_cores: int | None = None) -> Hardware:
    """``gpus=2,memory_gb=80,cc=8.0`` -> the described machine (``gpus=0`` describes a CPU)."""
    values: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in _SPEC_KEYS:
            raise UsageError(
                f"'{part}' in the hardware description is not one of gpus=N, memory_gb=GB, cc=X.Y; "
                "write e.g. --assume-hardware gpus=1,memory_gb=80,cc=9.0.",
                kind="hardware_spec",
            )
        try:
            values[key] = _SPEC_KEYS[key](raw.strip())
        except ValueError:
            raise UsageError(f"'{part}' in the hardware description needs a number.", kind="hardware_spec") from None
    gpus = values.get("gpus", 1)
    if not 0 <= gpus <= 64:
        raise UsageError(f"gpus={gpus} is out of range: describe 0 to 64 GPUs.", kind="hardware_spec")
    if gpus and not (1 <= values.get("memory_gb", 0) <= 1024 and 3.0 <= values.get("cc", 0) <= 20):
        raise UsageError(
            "A GPU description needs memory_gb (1-1024) and cc, the compute capability (e.g. 7.5 for "
            "a T4, 8.0 for an A100, 9.0 for an H100 or H200).",
            kind="hardware_spec",
        )
    cores = cpu_cores or _cpu_cores()
    if not gpus:
        return Hardware(cpu_cores=cores, assumed=True)
    return Hardware(
        gpus=gpus,
        gpu_memory_mb=int(values["memory_gb"] * 1024),
        compute_capability=values["cc"],
        cpu_cores=cores,
        assumed=True,
    )


def _cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def detect_hardware(visible_devices: str | None = None) -> Hardware:
    """The machine as a TensorFlow process with ``CUDA_VISIBLE_DEVICES=visible_devices`` sees it.

    None means the variable is unset: every GPU. The caller reads the variable, ``pipeline`` never does.
    """
    return detect_visible(visible_devices)[0]


def detect_visible(visible_devices: str | None = None) -> tuple[Hardware, tuple[str, ...]]:
    """``detect_hardware``, and nvidia-smi's indices of the GPUs that process sees in its order (its GPU:0
    first), from one nvidia-smi call, which can take seconds.

    nvidia-smi numbers GPUs in PCI bus order, CUDA fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``:
    a child given some of these indices must be started with that order too. Indices in
    ``visible_devices`` are read as nvidia-smi's.
    """
    cores = _cpu_cores()
    gpus = _visible(_query_gpus(), visible_devices)
    if not gpus:
        return Hardware(cpu_cores=cores), ()
    hardware = Hardware(
        gpus=len(gpus),
        gpu_memory_mb=min(gpu.memory_mb for gpu in gpus),
        compute_capability=min(gpu.compute_capability for gpu in gpus),
        cpu_cores=cores,
    )
    return hardware, tuple(gpu.index for gpu in gpus)


@dataclass(frozen=True)
class _Gpu:
    index: str
    uuid: str
    memory_mb: int
    compute_capability: float


def _query_gpus() -> list[_Gpu]:
    """Every GPU of the machine: nvidia-smi ignores ``CUDA_VISIBLE_DEVICES``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,uuid,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]
    return [_Gpu(index, uuid, int(float(memory)), float(cc)) for index, uuid, memory, cc in rows]


def _visible(gpus: list[_Gpu], visible_devices: str | None) -> list[_Gpu]:
    """CUDA's reading: the listed GPUs in list order, up to the first entry that names no new GPU.

    CUDA hides every device from an invalid entry on, so "" and "-1" hide them all. A repeated
    GPU is taken as invalid too: no process may be handed one GPU twice.
    """
    if visible_devices is None:
        return gpus
    seen: list[_Gpu] = []
    for entry in visible_devices.split(","):
        gpu = _named(gpus, entry.strip())
        if gpu is None or gpu in seen:
            break
        seen.append(gpu)
    return seen


def _named(gpus: list[_Gpu], entry: str) -> _Gpu | None:
    if entry.isascii() and entry.isdigit():
        return next((gpu for gpu in gpus if gpu.index == str(int(entry))), None)
    if entry.startswith("GPU-"):  # a UUID, or the start of one as long as it names a single GPU
        matches = [gpu for gpu in gpus if gpu.uuid.lower().startswith(entry.lower())]
        return matches[0] if len(matches) == 1 else None
    return None
