"""The detector catalogue (``catalog.json``) and which model to recommend.

The catalogue is data, not code: each entry names a Model Garden experiment and
the config keys that turn it into that detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

from pipeline.errors import UsageError
from pipeline.train.hardware import Hardware, device_text

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
    init_modules: tuple[str, ...]  # what the catalogue's checkpoint restores: backbone, decoder, head
    checkpoint_recipe: dict  # Model Garden keys the checkpoint was trained with, which a start from it must keep
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
            "start": start_point(self, pretrained=True).kind,
            "when": self.when,
            "tflite": self.tflite,
        }


@dataclass(frozen=True)
class StartPoint:
    """Where a job's weights begin. ``kind``: "detector" (a COCO detector: backbone, decoder and head, all
    but the class logits), "backbone" (an ImageNet backbone), "checkpoint" (the user's own: it restores what
    it holds) or "scratch"."""

    kind: str
    modules: str | tuple[str, ...]  # Model Garden's task.init_checkpoint_modules; "all": what it holds
    recipe: dict
    url: str | None


def start_point(spec: ModelSpec, pretrained: bool, pretrained_url: str | None = None) -> StartPoint:
    if not pretrained or not (pretrained_url or spec.checkpoint_url):
        return StartPoint("scratch", (), {}, None)
    if pretrained_url:
        return StartPoint("checkpoint", "all", {}, pretrained_url)
    kind = "detector" if "head" in spec.init_modules else "backbone"
    return StartPoint(kind, spec.init_modules, spec.checkpoint_recipe, spec.checkpoint_url)


# What a checkpoint's own params.yaml says about the weights' architecture and numerics (the active
# backbone's and decoder's fields are added by ``recipe_of``); the rest of a config may differ freely.
_RECIPE_KEYS = (
    "norm_activation.activation",
    "norm_activation.norm_epsilon",
    "backbone.type",
    "decoder.type",
    "head.num_convs",
    "head.num_filters",
    "head.use_separable_conv",
    "min_level",
    "max_level",
    "anchor.num_scales",
    "anchor.aspect_ratios",
)
_ARCHITECTURE_FIELDS = ("model_id", "filter_size_scale", "se_ratio", "expand_ratio", "depth_multiplier", "num_filters")


def recipe_of(params: dict) -> dict:
    """The recipe keys of a checkpoint's params.yaml (as loaded), as dotted Model Garden keys."""
    model = params.get("task", {}).get("model", {})
    keys = list(_RECIPE_KEYS)
    for part in ("backbone", "decoder"):
        kind = model.get(part, {}).get("type")
        keys += [f"{part}.{kind}.{field}" for field in _ARCHITECTURE_FIELDS if kind]
    recipe = {}
    for key in keys:
        node = model
        for name in key.split("."):
            node = node.get(name) if isinstance(node, dict) else None
        if node is not None:
            recipe[f"task.model.{key}"] = node
    return recipe


# A recommendation's reasons: kind -> the CLI's English, from the reason's parameters.
REASONS = {
    "no_gpu": "no GPU here ({cores} CPU cores): only a mobile model trains in minutes on a CPU",
    "small_gpu": "the GPU has {memory_gb} GB: a mobile model with COCO-pretrained weights fits with a useful batch",
    "small_dataset": (
        "{images} labelled images is a small dataset: a pretrained mobile model generalises better than a large one"
    ),
    "accurate": "{images} labelled images and {device}: the COCO-pretrained ResNet-50 FPN is the accurate choice",
}


@dataclass(frozen=True)
class Recommendation:
    name: str
    kind: str  # one of REASONS; ``params`` fill it in (a device is ``Hardware.device_params``)
    params: dict = field(default_factory=dict, hash=False)

    @property
    def reason(self) -> str:
        """The reason in the CLI's English."""
        params = self.params | ({"device": device_text(self.params["device"])} if "device" in self.params else {})
        return REASONS[self.kind].format(**params)


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
        "(`python -m pipeline models` shows what each is for).",
        kind="unknown_model",
        details={"name": name, "models": [spec.name for spec in catalog()]},
    )


def recommend(labelled_images: int, hardware: Hardware) -> Recommendation:
    if not hardware.gpus:
        return Recommendation("mobilenetv2-fpn", "no_gpu", {"cores": hardware.cpu_cores})
    if hardware.gpu_memory_mb < SMALL_GPU_MB:
        return Recommendation("spinenet49-mobile", "small_gpu", {"memory_gb": hardware.gpu_memory_mb // 1024})
    if labelled_images < SMALL_DATASET_IMAGES:
        return Recommendation("spinenet49-mobile", "small_dataset", {"images": labelled_images})
    return Recommendation("resnet50-fpn", "accurate", {"images": labelled_images, "device": hardware.device_params})
