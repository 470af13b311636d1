"""Turn a training job into a checked, self-contained model archive.

The best checkpoint (or the latest one) becomes Model Garden's SavedModel, and a
TFLite model when the architecture converts. Nobody gets the archive before a
fresh process (``pipeline.export.verify``) has run it on every validation image and its
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

from pipeline.data.workspace import Workspace
from pipeline.errors import ExportError
from pipeline.export.predict import LABEL_MAP, SAVED_MODEL
from pipeline.export.verify import evaluate_tflite
from pipeline.files import PROJECT_ROOT, replacing, write_json
from pipeline.label_map import read_pbtxt
from pipeline.train.config import load_params
from pipeline.train.devices import configure_tensorflow
from pipeline.train.job_folder import JobPaths, load_job

log = logging.getLogger(__name__)
# The training evaluator and the exported model run the same graph on the same pixels but
# batched differently (and decoded by TensorFlow vs Pillow), so scores differ in the last
# digits. AP50 then moves by at most a borderline box: 0.001-0.007 measured on 20-32 demo
# images. AP (IoU 0.5:0.95) is not compared: at IoU 0.95 sub-pixel jitter flips matches and
# it moved by up to 0.018. A gap above 0.05 AP50 means a broken export (weights not
# restored, boxes in the wrong frame); on a tiny validation set one box flipping moves AP50
# by about 1/boxes, so the tolerance is never below that.
TOLERANCE = 0.05
COMPARED = "AP50"


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
        raise ExportError(
            f"The job's workspace {meta['workspace']} has no validation records to check the "
            "export on; it must still hold the data the job was trained on."
        )
    out_zip = Path(out_zip).absolute()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_zip.parent, prefix=f".{out_zip.stem}-"))
    try:
        folder, work = staging / "archive", staging / "work"
        checked, has_tflite, tflite_note = _build(job, meta, chosen, records, folder, work, tflite, samples)
        tolerance = max(TOLERANCE, 1 / max(checked["boxes"], 1))
        check_agreement(chosen, checked, tolerance)
        if has_tflite:
            has_tflite, tflite_note = _check_tflite(checked, folder / "model.tflite", tflite_note, tolerance)
        write_json(folder / "metrics.json", _metrics(chosen, checked, meta["model"], tolerance))
        (folder / "README.md").write_text(
            readme(meta["model"], read_pbtxt(folder / LABEL_MAP), checked, has_tflite), encoding="utf-8"
        )
        kept = _keep_in_job(job, folder, checked)
        _write_zip(folder, out_zip)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(
        archive=out_zip,
        archive_bytes=out_zip.stat().st_size,
        checkpoint=chosen,
        training_ap=chosen.training.get("AP"),
        training_ap50=chosen.training.get("AP50"),
        export_ap=checked["AP"],
        export_ap50=checked["AP50"],
        per_class_ap=checked["per_class_AP"],
        tolerance=tolerance,
        tflite=has_tflite,
        tflite_note=tflite_note,
        samples=kept,
        seconds=round(time.monotonic() - start, 1),
    )


def _build(
    job: JobPaths,
    meta: dict,
    chosen: Checkpoint,
    records: list[Path],
    folder: Path,
    work: Path,
    tflite: bool,
    samples: int,
) -> tuple[dict, bool, str]:
    """Export into ``folder`` and measure it: verify's result, with the TFLite model's AP when it converted."""
    start = time.monotonic()
    weights = _snapshot(chosen, work)
    params = _export_saved_model(job, meta, weights, folder)
    log.info("SavedModel of %s written in %.0f s", chosen.prefix, time.monotonic() - start)
    verifying = start_verify(folder, records, samples, work / "verify.log")
    try:  # the TFLite conversion runs while the fresh process checks the SavedModel
        has_tflite, tflite_note = (
            _convert_tflite(params, weights, meta["model"], work, folder / "model.tflite")
            if tflite
            else (False, "not requested (--no-tflite)")
        )
        log.info("TFLite done after %.0f s: %s", time.monotonic() - start, tflite_note)
        checked = finish_verify(verifying, work / "verify.log")
    finally:
        if verifying.poll() is None:  # something above failed: the check is of no use now
            verifying.kill()
            verifying.wait()
    log.info("verified after %.0f s: AP %s, AP50 %s", time.monotonic() - start, checked["AP"], checked["AP50"])
    # The interpreter reads only the file, so unlike the SavedModel it can be checked in this process.
    names = read_pbtxt(folder / LABEL_MAP).names()
    checked["tflite"] = evaluate_tflite(folder / "model.tflite", records, names) if has_tflite else None
    return checked, has_tflite, tflite_note


def choose_checkpoint(job: JobPaths, meta: dict) -> Checkpoint:
    """The best checkpoint by validation AP, else the latest training one; ExportError if none."""
    import tensorflow as tf

    configure_tensorflow(tf)
    best = json.loads(job.best_json.read_text()) if job.best_json.exists() else {}
    if best:
        # best.json's path is relative to wherever training ran; the file name is what counts.
        prefix = job.best / Path(best["checkpoint"]).name
        if Path(f"{prefix}.index").exists():
            return Checkpoint(
                str(prefix), int(best["step"]), "best", best, f"best checkpoint by validation AP (step {best['step']})"
            )
    latest = tf.train.latest_checkpoint(str(job.checkpoints)) if job.checkpoints.is_dir() else None
    if latest is None:
        raise ExportError(
            f"The job {job.root} has no checkpoint yet, so there is nothing to export: train it "
            f"first (`python -m pipeline train {meta['workspace']} --job-dir {job.root}`), then "
            "export again."
        )
    step = int(latest.rsplit("-", 1)[1])
    return Checkpoint(
        latest,
        step,
        "latest",
        {},
        f"no best checkpoint (no evaluation kept one): exported the latest training checkpoint, "
        f"step {step}, so there is no training AP to compare the export with",
    )


def _snapshot(chosen: Checkpoint, work: Path) -> str:
    """Copy the checkpoint first: a job still training replaces its best and prunes old ones."""
    work.mkdir(parents=True)
    prefix = Path(chosen.prefix)
    try:
        copied = [shutil.copy2(path, work) for path in prefix.parent.glob(prefix.name + ".*")]
    except FileNotFoundError:
        copied = []
    if not any(name.endswith(".index") for name in map(str, copied)):
        raise ExportError(
            f"The checkpoint {prefix} changed while it was being read (is the job still training?): export again."
        )
    return str(work / prefix.name)


def _export_saved_model(job: JobPaths, meta: dict, weights: str, folder: Path):
    """Write saved_model/, label_map.pbtxt and params.yaml into ``folder``; return the params."""
    params = load_params(meta["experiment"], job.params)
    # predict scales boxes by the user's image size: they must come out normalised to it.
    params.override({"task": {"export_config": {"output_normalized_coordinates": True}}}, is_strict=True)
    folder.mkdir(parents=True)
    _model_garden_export(params, weights, folder / SAVED_MODEL, input_type="image_tensor", batch_size=None)
    shutil.copyfile(meta["label_map"], folder / LABEL_MAP)
    shutil.copyfile(job.params, folder / "params.yaml")
    return params


def _model_garden_export(params, weights: str, out: Path, input_type: str, batch_size: int | None) -> None:
    import tensorflow as tf
    from official.vision.serving import export_saved_model_lib

    height, width = params.task.model.input_size[:2]
    try:
        export_saved_model_lib.export_inference_graph(
            input_type=input_type,
            batch_size=batch_size,
            input_image_size=[height, width],
            params=params,
            checkpoint_path=weights,
            export_dir=str(out),
        )
    except (AssertionError, ValueError, tf.errors.OpError) as exc:  # e.g. weights that do not fit params.yaml
        raise ExportError(
            f"Model Garden could not export the checkpoint with the job's params.yaml: {_first_line(exc)}"
        ) from exc


def _convert_tflite(params, weights: str, model: str, work: Path, out: Path) -> tuple[bool, str]:
    """A float32 TFLite model, or False and one line saying why this architecture does not convert."""
    from official.vision.serving import export_tflite_lib

    lite = copy.deepcopy(params)
    generator = lite.task.model.detection_generator
    # Model Garden's TFLite defaults (class-agnostic "fast" NMS, score >= 0.1) cost a third of
    # the AP50 on the demo data; these make the TFLite op keep what the SavedModel keeps.
    lite.override(
        {
            "task": {
                "model": {
                    "detection_generator": {
                        "nms_version": "tflite",
                        "tflite_post_processing": {
                            "use_regular_nms": True,
                            "nms_score_threshold": generator.pre_nms_score_threshold,
                            "nms_iou_threshold": generator.nms_iou_threshold,
                            "max_detections": generator.max_num_detections,
                            "detections_per_class": generator.max_num_detections,
                        },
                    }
                }
            }
        },
        is_strict=True,
    )
    try:
        _model_garden_export(lite, weights, work / "tflite_saved_model", input_type="tflite", batch_size=1)
        out.write_bytes(export_tflite_lib.convert_tflite_model(saved_model_dir=str(work / "tflite_saved_model")))
    except Exception as exc:  # any failure here means "no TFLite"; the SavedModel is still good
        log.warning("TFLite conversion of %s failed", model, exc_info=True)
        return False, f"{model} does not convert to TFLite: {_first_line(exc)}"
    height, width = lite.task.model.input_size[:2]
    return True, (
        f"float32, input [1, {height}, {width}, 3] normalised and padded as README.md says, "
        "non-max suppression by TFLite's detection op"
    )


def start_verify(folder: Path, records: list[Path], samples: int, errors: Path) -> subprocess.Popen:
    """Start ``pipeline.export.verify`` in a fresh process: only what was written to disk can pass."""
    command = [
        sys.executable,
        "-m",
        "pipeline.export.verify",
        str(folder),
        *map(str, records),
        "--samples",
        str(samples),
    ]
    with errors.open("wb") as stderr:  # a file, not a pipe: TensorFlow's chatter must never block the check
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT
        )


def finish_verify(process: subprocess.Popen, errors: Path) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        tail = "\n".join(errors.read_text(errors="replace").strip().splitlines()[-5:])
        raise ExportError(f"The exported model failed its check in a fresh process (exit {process.returncode}): {tail}")
    return json.loads(out.strip().splitlines()[-1])


def _first_line(exc: BaseException) -> str:
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return line if len(line) <= 200 else line[:197] + "..."


def check_agreement(chosen: Checkpoint, checked: dict, tolerance: float) -> None:
    trained, exported = chosen.training.get(COMPARED), checked[COMPARED]
    if trained is None or exported is None:
        return  # nothing to compare with: the report's checkpoint note says so
    log.info("%s: training %.4f, export %.4f", COMPARED, trained, exported)
    if abs(trained - exported) > tolerance:
        raise ExportError(
            f"The exported model does not reproduce training: {COMPARED} {exported:.3f} on the validation images "
            f"against {trained:.3f} when training evaluated step {chosen.step} (tolerance {tolerance:.3f}). "
            "The archive was not written; report this with the job folder.",
            details={"metric": COMPARED, "export": exported, "training": trained, "tolerance": tolerance},
        )


def _check_tflite(checked: dict, path: Path, note: str, tolerance: float) -> tuple[bool, str]:
    lite, saved = checked["tflite"][COMPARED], checked[COMPARED]
    if lite is not None and saved is not None and abs(lite - saved) > tolerance:
        path.unlink()
        return False, (
            f"converted, but left out: its {COMPARED} {lite:.3f} is not the SavedModel's {saved:.3f} "
            f"(tolerance {tolerance:.3f})"
        )
    return True, note if lite is None else f"{note}; {COMPARED} {lite:.3f} on the validation images"


def _metrics(chosen: Checkpoint, checked: dict, model: str, tolerance: float) -> dict:
    training = {key: chosen.training.get(key) for key in ("AP", "AP50", "AP75", "per_class_AP")}
    return {
        "model": model,
        "checkpoint": {"step": chosen.step, "source": chosen.source, "note": chosen.note},
        "training": training if chosen.training else None,
        "export": {
            key: checked[key] for key in ("AP", "AP50", "AP75", "per_class_AP", "images", "boxes", "seconds_per_image")
        },
        "tolerance": {"metric": COMPARED, "max_difference": tolerance},
        "confusion": checked["confusion"],
        "tflite": checked["tflite"],
    }


def _keep_in_job(job: JobPaths, folder: Path, checked: dict) -> tuple[Path, ...]:
    """Confusion matrix and sample drawings into the job folder, where the bot shows them from."""
    write_json(job.confusion, checked["confusion"])
    shutil.copyfile(folder / "confusion.png", job.confusion.with_suffix(".png"))
    samples = job.root / "samples"
    shutil.rmtree(samples, ignore_errors=True)  # drawings of an earlier export would mislead
    samples.mkdir()
    return tuple(Path(shutil.copy2(path, samples)) for path in sorted((folder / "samples").glob("*.png")))


def _write_zip(folder: Path, out_zip: Path) -> None:
    with replacing(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())


def readme(model: str, label_map, checked: dict, has_tflite: bool) -> str:
    labels = label_map.names()
    lines = [
        f"# {model} detector ({', '.join(labels.values())})",
        "",
        f"Checked on {checked['images']} validation images: AP {checked['AP']:.3f}, AP50 {checked['AP50']:.3f} "
        "(`metrics.json`, `confusion.png`, `samples/`).",
        "",
        "Run it on a photo (Python, `pip install tensorflow pillow`), from this folder:",
        "",
        "```python",
        *README_SNIPPET.format(labels=labels).splitlines(),
        "```",
        "",
        "`detection_boxes` are [ymin, xmin, ymax, xmax] in 0..1 of the image you pass; "
        "`detection_classes` are the ids in `label_map.pbtxt`.",
    ]
    if has_tflite:
        lines += [
            "",
            "`model.tflite` (float32) takes one image as float32 [1, H, W, 3] (H, W: the model input): "
            "subtract the mean (123.675, 116.28, 103.53) and divide by (58.395, 57.12, 57.375) per RGB "
            "channel, resize keeping the aspect ratio so the image fits, pad bottom and right with zeros. "
            "Its boxes are in 0..1 of that padded input.",
        ]
    return "\n".join(lines) + "\n"


README_SNIPPET = """\
import sys, numpy as np, tensorflow as tf
from PIL import Image, ImageOps
LABELS = {labels!r}
model = tf.saved_model.load("saved_model")
image = ImageOps.exif_transpose(Image.open(sys.argv[1])).convert("RGB")  # upright, as a phone shows it
out = model.signatures["serving_default"](inputs=tf.constant(np.asarray(image)[None]))
w, h = image.size  # boxes are [ymin, xmin, ymax, xmax] in 0..1 of the image: scale them to its pixels
for (y0, x0, y1, x1), score, c in zip(*(out[f"detection_{{k}}"][0].numpy() for k in ("boxes", "scores", "classes"))):
    if score >= 0.3:
        print(LABELS.get(int(c), int(c)), round(float(score), 3), [round(v) for v in (x0 * w, y0 * h, x1 * w, y1 * h)])
"""
