"""The detector catalogue (``catalog.json``) and which model to recommend.

The catalogue is data, not code: each entry names a Model Garden experiment and
the config keys that turn it into that detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from pipeline.errors import UsageError
from pipeline.train.hardware import Hardware

# Below this many labelled images a big detector overfits before it pays off.
SMALL_DATASET_IMAGES = 300
# Below this GPU memory the 640x640 detectors only fit with tiny batches.
SMALL_GPU_MB = 8 * 1024


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    experiment: str
    input_size: int
    coco_ap: float
    params_m: float
    gflops: float | None
    checkpoint_url: str | None
    init_modules: tuple[str, ...]
    when: str
    tflite: bool
    config: dict
    cpu_config: dict
    batch_per_16gb: int

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "experiment": self.experiment,
            "input_size": self.input_size,
            "coco_ap": self.coco_ap,
            "params_m": self.params_m,
            "gflops": self.gflops,
            "pretrained": self.checkpoint_url,
            "init_modules": list(self.init_modules),
            "when": self.when,
            "tflite": self.tflite,
        }


@dataclass(frozen=True)
class Recommendation:
    name: str
    reason: str


def catalog() -> tuple[ModelSpec, ...]:
    payload = json.loads(resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))
    return tuple(ModelSpec(**(entry | {"init_modules": tuple(entry["init_modules"])})) for entry in payload["models"])


def get_model(name: str) -> ModelSpec:
    for spec in catalog():
        if spec.name == name:
            return spec
    names = ", ".join(spec.name for spec in catalog())
    raise UsageError(
        f"There is no model called '{name}'. Choose one of: {names} "
        "(`python -m pipeline models` shows what each is for)."
    )


def recommend(labelled_images: int, hardware: Hardware) -> Recommendation:
    if not hardware.gpus:
        return Recommendation(
            "mobilenetv2-fpn",
            f"no GPU here ({hardware.cpu_cores} CPU cores): only a mobile model trains in minutes on a CPU",
        )
    if hardware.gpu_memory_mb < SMALL_GPU_MB:
        return Recommendation(
            "spinenet49-mobile",
            f"the GPU has {hardware.gpu_memory_mb // 1024} GB: a mobile "
            "model with COCO-pretrained weights fits with a useful batch",
        )
    if labelled_images < SMALL_DATASET_IMAGES:
        return Recommendation(
            "spinenet49-mobile",
            f"{labelled_images} labelled images is a small dataset: a "
            "pretrained mobile model generalises better than a large one",
        )
    return Recommendation(
        "resnet50-fpn",
        f"{labelled_images} labelled images and {hardware.device}: the "
        "COCO-pretrained ResNet-50 FPN is the accurate choice",
    )
