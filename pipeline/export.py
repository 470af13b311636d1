"""Turn a training job into a checked, self-contained model archive.

The best checkpoint (or the latest one) becomes Model Garden's SavedModel, and a
TFLite model when the architecture converts. Nobody gets the archive before a
fresh process (``pipeline.verify``) has run it on every validation image and its
AP agrees with what training measured.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .dataset import write_json
from .errors import ExportError
from .jobs import JobPaths, load_job
from .label_map import read_pbtxt
from .predict import LABEL_MAP, SAVED_MODEL
from .train_config import load_params
from .workspace import Workspace

log = logging.getLogger(__name__)
# The training evaluator and the exported model differ only in JPEG decoding (TensorFlow's
# vs Pillow's) and in how the batch is formed; on the demo data they agree to 0.001. A
# wider gap means the export is wrong (weights not restored, boxes in the wrong frame),
# while 0.05 still allows for a box or two flipping on a small validation set.
TOLERANCE = 0.05
COMPARED = ("AP", "AP50")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Checkpoint:
    prefix: str
    step: int
    source: str  # "best" (by validation AP) or "latest" (no evaluation kept a best one)
    training: dict  # best.json's metrics; empty for "latest"
    note: str


@dataclass(frozen=True)
class ExportReport:
    archive: Path
    archive_bytes: int
    checkpoint: Checkpoint
    training_ap: float | None
    training_ap50: float | None
    export_ap: float | None
    export_ap50: float | None
    per_class_ap: dict
    tolerance: float
    tflite: bool
    tflite_note: str
    samples: tuple[Path, ...]
    seconds: float

    def to_json(self) -> dict:
        return asdict(self) | {"archive": str(self.archive), "samples": [str(p) for p in self.samples]}


def export_job(job_dir: Path, out_zip: Path, tflite: bool = True, samples: int = 4) -> ExportReport:
    start = time.monotonic()
    job, meta = load_job(Path(job_dir))
    chosen = choose_checkpoint(job, meta)
    records = Workspace(Path(meta["workspace"])).records("val")
    if not records:
        raise ExportError(f"The job's workspace {meta['workspace']} has no validation records to check the "
                          "export on; it must still hold the data the job was trained on.")
    out_zip = Path(out_zip).absolute()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_zip.parent, prefix=f".{out_zip.stem}-"))
    try:
        folder, work = staging / "archive", staging / "work"
        params = _export_saved_model(job, meta, chosen, folder)
        log.info("SavedModel of %s written after %.0f s", chosen.prefix, time.monotonic() - start)
        has_tflite, tflite_note = (_convert_tflite(params, chosen, meta["model"], work, folder / "model.tflite")
                                   if tflite else (False, "not requested (--no-tflite)"))
        log.info("TFLite done after %.0f s: %s", time.monotonic() - start, tflite_note)
        checked = run_verify(folder, records, samples, folder / "model.tflite" if has_tflite else None)
        log.info("verified after %.0f s: AP %s, AP50 %s", time.monotonic() - start, checked["AP"], checked["AP50"])
        _check_agreement(chosen, checked)
        if has_tflite:
            has_tflite, tflite_note = _check_tflite(checked, folder / "model.tflite", tflite_note)
        write_json(folder / "metrics.json", _metrics(chosen, checked, meta["model"]))
        (folder / "README.md").write_text(readme(meta["model"], read_pbtxt(folder / LABEL_MAP), checked,
                                                 has_tflite), encoding="utf-8")
        kept = _keep_in_job(job, folder, checked)
        _write_zip(folder, out_zip)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(archive=out_zip, archive_bytes=out_zip.stat().st_size, checkpoint=chosen,
                        training_ap=chosen.training.get("AP"), training_ap50=chosen.training.get("AP50"),
                        export_ap=checked["AP"], export_ap50=checked["AP50"], per_class_ap=checked["per_class_AP"],
                        tolerance=TOLERANCE, tflite=has_tflite, tflite_note=tflite_note, samples=kept,
                        seconds=round(time.monotonic() - start, 1))


def choose_checkpoint(job: JobPaths, meta: dict) -> Checkpoint:
    """The best checkpoint by validation AP, else the latest training one; ExportError if none."""
    import tensorflow as tf

    best = json.loads(job.best_json.read_text()) if job.best_json.exists() else {}
    if best:
        # best.json's path is relative to wherever training ran; the file name is what counts.
        prefix = job.best / Path(best["checkpoint"]).name
        if Path(f"{prefix}.index").exists():
            return Checkpoint(str(prefix), int(best["step"]), "best", best,
                              f"best checkpoint by validation AP (step {best['step']})")
    latest = tf.train.latest_checkpoint(str(job.checkpoints)) if job.checkpoints.is_dir() else None
    if latest is None:
        raise ExportError(f"The job {job.root} has no checkpoint yet, so there is nothing to export: train it "
                          f"first (`python -m pipeline train {meta['workspace']} --job-dir {job.root}`), then "
                          "export again.")
    step = int(latest.rsplit("-", 1)[1])
    return Checkpoint(latest, step, "latest", {},
                      f"no best checkpoint (the job was never evaluated): exported the latest training checkpoint, "
                      f"step {step}, so there is no training AP to compare the export with")


def _export_saved_model(job: JobPaths, meta: dict, chosen: Checkpoint, folder: Path):
    """Write saved_model/, label_map.pbtxt and params.yaml into ``folder``; return the params."""
    params = load_params(meta["experiment"], job.params)
    # predict scales boxes by the user's image size: they must come out normalised to it.
    params.override({"task": {"export_config": {"output_normalized_coordinates": True}}}, is_strict=True)
    folder.mkdir(parents=True)
    _model_garden_export(params, chosen, folder / SAVED_MODEL, input_type="image_tensor", batch_size=None)
    shutil.copyfile(meta["label_map"], folder / LABEL_MAP)
    shutil.copyfile(job.params, folder / "params.yaml")
    return params


def _model_garden_export(params, chosen: Checkpoint, out: Path, input_type: str, batch_size: int | None) -> None:
    from official.vision.serving import export_saved_model_lib

    height, width = params.task.model.input_size[:2]
    export_saved_model_lib.export_inference_graph(
        input_type=input_type, batch_size=batch_size, input_image_size=[height, width], params=params,
        checkpoint_path=chosen.prefix, export_dir=str(out))


def _convert_tflite(params, chosen: Checkpoint, model: str, work: Path, out: Path) -> tuple[bool, str]:
    """A float32 TFLite model, or False and one line saying why this architecture does not convert."""
    from official.vision.serving import export_tflite_lib

    lite = copy.deepcopy(params)
    generator = lite.task.model.detection_generator
    # Model Garden's TFLite defaults (class-agnostic "fast" NMS, score >= 0.1) cost a third of
    # the AP50 on the demo data; these make the TFLite op keep what the SavedModel keeps.
    lite.override({"task": {"model": {"detection_generator": {"nms_version": "tflite", "tflite_post_processing": {
        "use_regular_nms": True, "nms_score_threshold": generator.pre_nms_score_threshold,
        "nms_iou_threshold": generator.nms_iou_threshold, "max_detections": generator.max_num_detections,
        "detections_per_class": generator.max_num_detections}}}}}, is_strict=True)
    try:
        _model_garden_export(lite, chosen, work / "tflite_saved_model", input_type="tflite", batch_size=1)
        out.write_bytes(export_tflite_lib.convert_tflite_model(saved_model_dir=str(work / "tflite_saved_model")))
    except Exception as exc:  # any failure here means "no TFLite"; the SavedModel is still good
        log.warning("TFLite conversion of %s failed", model, exc_info=True)
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return False, f"{model} does not convert to TFLite: {reason[:200]}"
    height, width = lite.task.model.input_size[:2]
    return True, (f"float32, input [1, {height}, {width}, 3] normalised and padded as README.md says, "
                  "non-max suppression by TFLite's detection op")


def run_verify(folder: Path, records: list[Path], samples: int, tflite: Path | None) -> dict:
    """Run ``pipeline.verify`` in a fresh process: only what was written to disk can pass."""
    command = [sys.executable, "-m", "pipeline.verify", str(folder), *map(str, records), "--samples", str(samples)]
    if tflite:
        command += ["--tflite", str(tflite)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ExportError(f"The exported model failed its check in a fresh process (exit {result.returncode}): "
                          f"{tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_agreement(chosen: Checkpoint, checked: dict) -> None:
    for key in COMPARED if chosen.training else ():
        trained, exported = chosen.training.get(key), checked[key]
        if trained is None or exported is None:
            continue
        if abs(trained - exported) > TOLERANCE:
            raise ExportError(
                f"The exported model does not reproduce training: {key} {exported:.3f} on the validation images "
                f"against {trained:.3f} when training evaluated step {chosen.step} (tolerance {TOLERANCE}). "
                "The archive was not written; report this with the job folder.",
                details={"metric": key, "export": exported, "training": trained, "tolerance": TOLERANCE})
        log.info("%s: training %.4f, export %.4f", key, trained, exported)


def _check_tflite(checked: dict, path: Path, note: str) -> tuple[bool, str]:
    lite = checked["tflite"]
    gaps = {key: abs(lite[key] - checked[key]) for key in COMPARED if lite[key] is not None and checked[key] is not None}
    bad = {key: gap for key, gap in gaps.items() if gap > TOLERANCE}
    if bad:
        path.unlink()
        key = next(iter(bad))
        return False, (f"converted, but left out: its {key} {lite[key]:.3f} is not the SavedModel's "
                       f"{checked[key]:.3f} (tolerance {TOLERANCE})")
    return True, f"{note}; AP50 {lite['AP50']:.3f} on the validation images"


def _metrics(chosen: Checkpoint, checked: dict, model: str) -> dict:
    training = {key: chosen.training.get(key) for key in ("AP", "AP50", "AP75", "per_class_AP")}
    return {"model": model, "checkpoint": {"step": chosen.step, "source": chosen.source, "note": chosen.note},
            "training": training if chosen.training else None,
            "export": {key: checked[key] for key in ("AP", "AP50", "AP75", "per_class_AP", "images",
                                                     "seconds_per_image")},
            "tolerance": {"metrics": list(COMPARED), "max_difference": TOLERANCE},
            "confusion": checked["confusion"], "tflite": checked["tflite"]}


def _keep_in_job(job: JobPaths, folder: Path, checked: dict) -> tuple[Path, ...]:
    """Confusion matrix and sample drawings into the job folder, where the bot shows them from."""
    write_json(job.confusion, checked["confusion"])
    shutil.copyfile(folder / "confusion.png", job.confusion.with_suffix(".png"))
    samples = job.root / "samples"
    shutil.rmtree(samples, ignore_errors=True)  # drawings of an earlier export would mislead
    samples.mkdir()
    return tuple(Path(shutil.copy2(path, samples)) for path in sorted((folder / "samples").glob("*.png")))


def _write_zip(folder: Path, out_zip: Path) -> None:
    tmp = out_zip.with_name(out_zip.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    tmp.replace(out_zip)


def readme(model: str, label_map, checked: dict, has_tflite: bool) -> str:
    labels = {item.id: item.name for item in label_map.items}
    lines = [f"# {model} detector ({', '.join(labels.values())})", "",
             f"Checked on {checked['images']} validation images: AP {checked['AP']:.3f}, AP50 {checked['AP50']:.3f} "
             "(`metrics.json`, `confusion.png`, `samples/`).", "",
             "Run it on a photo (Python, `pip install tensorflow pillow`), from this folder:", "", "```python",
             *README_SNIPPET.format(labels=labels).splitlines(), "```", "",
             "`detection_boxes` are [ymin, xmin, ymax, xmax] in 0..1 of the image you pass; "
             "`detection_classes` are the ids in `label_map.pbtxt`."]
    if has_tflite:
        lines += ["", "`model.tflite` (float32) takes one image as float32 [1, H, W, 3] (H, W: the model input): "
                  "subtract the mean (123.675, 116.28, 103.53) and divide by (58.395, 57.12, 57.375) per RGB "
                  "channel, resize keeping the aspect ratio so the image fits, pad bottom and right with zeros. "
                  "Its boxes are in 0..1 of that padded input."]
    return "\n".join(lines) + "\n"


README_SNIPPET = """\
import sys, numpy as np, tensorflow as tf
from PIL import Image, ImageOps
LABELS = {labels!r}
model = tf.saved_model.load("saved_model")
image = ImageOps.exif_transpose(Image.open(sys.argv[1])).convert("RGB")  # upright, as phones show it
out = model.signatures["serving_default"](inputs=tf.constant(np.asarray(image)[None]))
width, height = image.size
for (ymin, xmin, ymax, xmax), score, cls in zip(out["detection_boxes"][0].numpy(), out["detection_scores"][0].numpy(), out["detection_classes"][0].numpy()):
    if score >= 0.3:
        print(LABELS.get(int(cls), int(cls)), round(float(score), 3), [round(xmin * width), round(ymin * height), round(xmax * width), round(ymax * height)])
"""
