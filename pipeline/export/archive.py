"""Turn a training job into a checked, self-contained model archive.

The best checkpoint (or the latest one) becomes a SavedModel in the TF Object Detection API's
format (``signature.py``), TFLite models in float32, float16 and int8 with their metadata when
the architecture converts (``tflite.py``), and a checkpoint to continue training from. Nobody
gets the archive before a fresh process (``pipeline.export.verify``) has run every model on
every validation image and its AP50 agrees with what training measured.
"""

from __future__ import annotations

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

import yaml

from pipeline.data.workspace import Workspace
from pipeline.errors import ExportError
from pipeline.export.archive_readme import readme
from pipeline.export.predict import LABEL_MAP, SAVED_MODEL
from pipeline.export.signature import first_line
from pipeline.export.tflite import VARIANTS, Variant
from pipeline.files import PROJECT_ROOT, replacing, write_json
from pipeline.label_map import read_pbtxt
from pipeline.train.config import load_params
from pipeline.train.devices import configure_tensorflow
from pipeline.train.job_folder import JobPaths, load_job

log = logging.getLogger(__name__)
# How far each model's validation AP50 may be from training's (or, with no training AP50, from the SavedModel's).
# The SavedModel runs training's graph and NMS on the same pixels, decoded by Pillow instead of TensorFlow:
# 0.001-0.007 apart measured on 20-60 demo images. On the test job's 8 images (17 boxes), three trainings of
# the same recipe: training AP50 0.933 / 0.654 / 0.872, SavedModel 0.921 / 0.657 / 0.873, float32 TFLite
# 0.921 / 0.656 / 0.873, float16 0.921 / 0.653 / 0.873, int8 0.927 / 0.632 / 0.873: at most 0.012 apart for
# the float models (one box) and 0.022 for int8. The issue asks 0.01 for the float models and 0.05 for int8.
# AP (IoU 0.5:0.95) is not compared: at IoU 0.95 sub-pixel jitter flips matches, by up to 0.018. On a small
# validation set one box flipping moves AP50 by about 1/boxes, so no tolerance is below that (0.059 on the
# test job's), and the 0.01 applies from 100 validation boxes on.
FLOAT_TOLERANCE = 0.01
INT8_TOLERANCE = 0.05
COMPARED = "AP50"
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    prefix: str
    step: int
    source: str  # "best" (by validation AP) or "latest" (no evaluation kept a best one)
    training: dict  # best.json's metrics; empty for "latest"
    note: str


@dataclass(frozen=True)
class Artefact:
    """One model file of the archive, as the fresh process measured it."""

    name: str  # "saved_model", "float32", "float16", "int8" or "checkpoint"
    file: str  # in the archive
    bytes: int  # 0 when left out
    ap50: float | None
    latency_ms: float | None  # median per validation image on this CPU
    tolerance: float | None
    kept: bool
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
    tolerance: float  # the SavedModel's
    tflite: bool  # the float32 model.tflite is in the archive
    tflite_note: str
    artefacts: tuple[Artefact, ...]
    samples: tuple[Path, ...]
    seconds: float

    def to_json(self) -> dict:
        return asdict(self) | {"archive": str(self.archive), "samples": [str(p) for p in self.samples]}


def export_job(job_dir: Path, out_zip: Path, tflite: bool = True, samples: int = 4) -> ExportReport:
    start = time.monotonic()
    job, meta = load_job(Path(job_dir))
    chosen = choose_checkpoint(job, meta)
    workspace = Workspace(Path(meta["workspace"]))
    records = workspace.records("val")
    if not records:
        raise ExportError(
            f"The job's workspace {meta['workspace']} has no validation records to check the "
            "export on; it must still hold the data the job was trained on.",
            kind="no_val_records",
        )
    out_zip = Path(out_zip).absolute()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_zip.parent, prefix=f".{out_zip.stem}-"))
    try:
        folder = staging / "archive"
        inputs = (records, workspace.records("train"))
        checked, converted = _build(job, meta, chosen, inputs, folder, staging / "work", tflite, samples)
        tolerance = _tolerance(FLOAT_TOLERANCE, checked)
        check_agreement(chosen, checked, tolerance)
        artefacts = _artefacts(folder, chosen, checked, converted, tolerance)
        write_json(folder / "metrics.json", _metrics(chosen, checked, meta["model"], artefacts))
        names = read_pbtxt(folder / LABEL_MAP).names()
        size = yaml.safe_load((folder / "params.yaml").read_text())["task"]["model"]["input_size"][:2]
        text = readme(meta["model"], names, checked, artefacts, chosen, size)
        (folder / "README.md").write_text(text, encoding="utf-8")
        kept = _keep_in_job(job, folder, checked)
        _write_zip(folder, out_zip)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    float32 = next(a for a in artefacts if a.name == VARIANTS[0].name)
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
        tflite=float32.kept,
        tflite_note=float32.note,
        artefacts=artefacts,
        samples=kept,
        seconds=round(time.monotonic() - start, 1),
    )


def _build(
    job: JobPaths,
    meta: dict,
    chosen: Checkpoint,
    records: tuple[list[Path], list[Path]],
    folder: Path,
    work: Path,
    tflite: bool,
    samples: int,
) -> tuple[dict, dict[str, str | None]]:
    """Export into ``folder`` and measure it: verify's result, and each TFLite variant's failure (None: converted)."""
    from pipeline.export.signature import export_saved_model, write_checkpoint

    start = time.monotonic()
    val, train = records
    weights = _snapshot(chosen, work)
    params = load_params(meta["experiment"], job.params)
    folder.mkdir(parents=True)
    network = export_saved_model(params, weights, folder / SAVED_MODEL)
    write_checkpoint(network, chosen.step, folder / CHECKPOINT)
    shutil.copyfile(meta["label_map"], folder / LABEL_MAP)
    shutil.copyfile(job.params, folder / "params.yaml")
    log.info("SavedModel of %s written in %.0f s", chosen.prefix, time.monotonic() - start)
    verifying = start_verify(folder, val, samples, work / "verify.log")
    try:  # the TFLite conversions run while the fresh process checks the SavedModel
        if tflite:
            converted = _convert_all(params, weights, train, folder, work, verifying.stdin)
        else:
            converted = {variant.name: "not requested (--no-tflite)" for variant in VARIANTS}
        log.info("TFLite done after %.0f s: %s", time.monotonic() - start, converted)
        checked = finish_verify(verifying, work / "verify.log")
    finally:
        if verifying.poll() is None:  # something above failed: the check is of no use now
            verifying.kill()
            verifying.wait()
    log.info("verified after %.0f s: AP %s, AP50 %s", time.monotonic() - start, checked["AP"], checked["AP50"])
    return checked, converted


def _convert_all(params, weights: str, train: list[Path], folder: Path, work: Path, feed) -> dict[str, str | None]:
    """Each TFLite variant into ``folder``, its name fed to the verifying process; what failed, by variant."""
    from pipeline.export import tflite

    lite = tflite.lite_params(params)
    names = read_pbtxt(folder / LABEL_MAP).names()
    try:
        tflite.export_for_tflite(lite, weights, work / "tflite_saved_model")
    except Exception as exc:  # any failure here means "no TFLite"; the SavedModel is still good
        log.warning("TFLite export failed", exc_info=True)
        return {variant.name: f"does not convert to TFLite: {first_line(exc)}" for variant in VARIANTS}
    failed: dict[str, str | None] = {}
    for variant in VARIANTS:
        try:
            model = tflite.convert(lite, work / "tflite_saved_model", variant, train)
            (folder / variant.file).write_bytes(tflite.with_metadata(model, names))
        except Exception as exc:  # one variant failing (e.g. quantisation) leaves the others
            log.warning("TFLite %s failed", variant.name, exc_info=True)
            failed[variant.name] = f"{variant.name} conversion failed: {first_line(exc)}"
            continue
        failed[variant.name] = None
        try:
            feed.write(variant.file + "\n")
            feed.flush()
        except BrokenPipeError:
            pass  # the check already failed: finish_verify says why
    return failed


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
            "export again.",
            kind="no_checkpoint",
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
            f"The checkpoint {prefix} changed while it was being read (is the job still training?): export again.",
            kind="checkpoint_changed",
        )
    return str(work / prefix.name)


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
        "--tflite-from-stdin",  # the TFLite files, as they are converted; closing stdin ends the check
    ]
    with errors.open("wb") as stderr:  # a file, not a pipe: TensorFlow's chatter must never block the check
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
        )


def finish_verify(process: subprocess.Popen, errors: Path) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        tail = "\n".join(errors.read_text(errors="replace").strip().splitlines()[-5:])
        raise ExportError(
            f"The exported model failed its check in a fresh process (exit {process.returncode}): {tail}",
            kind="export_check_failed",
        )
    return json.loads(out.strip().splitlines()[-1])


def _tolerance(base: float, checked: dict) -> float:
    return max(base, 1 / max(checked["boxes"], 1))


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
            kind="export_mismatch",
            details={"metric": COMPARED, "export": exported, "training": trained, "tolerance": tolerance},
        )


def _artefacts(
    folder: Path, chosen: Checkpoint, checked: dict, converted: dict[str, str | None], tolerance: float
) -> tuple[Artefact, ...]:
    saved = Artefact(
        "saved_model",
        f"{SAVED_MODEL}/",
        _size(folder / SAVED_MODEL),
        checked[COMPARED],
        checked["latency_ms"],
        tolerance,
        True,
        "TF Object Detection API format: uint8 input_tensor [1, H, W, 3] of any size",
    )
    lite = tuple(_judge_tflite(folder, variant, chosen, checked, converted[variant.name]) for variant in VARIANTS)
    weights = Artefact(
        "checkpoint",
        f"{CHECKPOINT}/ckpt-{chosen.step}",
        _size(folder / CHECKPOINT),
        None,
        None,
        None,
        True,
        f"the weights of step {chosen.step}, for Model Garden's task.init_checkpoint",
    )
    return (saved, *lite, weights)


def _judge_tflite(folder: Path, variant: Variant, chosen: Checkpoint, checked: dict, failed: str | None) -> Artefact:
    """The variant kept if its AP50 is within its tolerance of training's (else the SavedModel's), else deleted."""
    tolerance = _tolerance(INT8_TOLERANCE if variant.name == "int8" else FLOAT_TOLERANCE, checked)
    if failed is not None:
        return Artefact(variant.name, variant.file, 0, None, None, tolerance, False, failed)
    measured = checked["tflite"][variant.file]
    lite, reference = measured[COMPARED], chosen.training.get(COMPARED, checked[COMPARED])
    path = folder / variant.file
    if lite is not None and reference is not None and abs(lite - reference) > tolerance:
        path.unlink()
        note = f"converted, but left out: its {COMPARED} {lite:.3f} is not {reference:.3f} (tolerance {tolerance:.3f})"
        return Artefact(variant.name, variant.file, 0, lite, measured["latency_ms"], tolerance, False, note)
    note = f"{variant.name}; float32 input normalised and padded as README.md says; TFLite's NMS op; metadata"
    return Artefact(
        variant.name, variant.file, path.stat().st_size, lite, measured["latency_ms"], tolerance, True, note
    )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _metrics(chosen: Checkpoint, checked: dict, model: str, artefacts: tuple[Artefact, ...]) -> dict:
    training = {key: chosen.training.get(key) for key in ("AP", "AP50", "AP75", "per_class_AP")}
    return {
        "model": model,
        "checkpoint": {"step": chosen.step, "source": chosen.source, "note": chosen.note},
        "training": training if chosen.training else None,
        "export": {
            key: checked[key] for key in ("AP", "AP50", "AP75", "per_class_AP", "images", "boxes", "latency_ms")
        },
        "compared": COMPARED,
        "artefacts": [asdict(artefact) for artefact in artefacts],
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
