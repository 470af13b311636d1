"""Fine-tuning from a detector checkpoint: what is restored, what is re-initialised, and that it pays.

The "COCO-like" detector is the shared ``trained_job``: mobilenetv2-fpn trained on three shape classes. Its
training checkpoint and params.yaml are served as a .tar.gz from 127.0.0.1, the way a published Model Garden
archive is, and fine-tuned on a one-class and a two-class set. The catalogue's own starts cannot be
downloaded here; the ImageNet backbone start is proven on a locally made MobileNetV2 checkpoint put where
the weights cache keeps the catalogue's (what an operator does on a machine without internet).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.data.steps import PrepareOptions, prepare
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from pipeline.errors import TrainingError, UsageError
from pipeline.train.events import read_events
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
# RetinaNet's class-logits bias starts at the focal-loss prior: every anchor says "object" with p = 0.01.
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)
CLASSIFIER = ("head/_classifier/depthwise_kernel", "head/_classifier/pointwise_kernel", "head/_classifier/bias")
# 30 steps of batch 4 from the planner's schedule: the restored head finds the circles (AP50 0.92 measured) while
# a backbone-only start has not yet lifted any score over the evaluator's threshold (0.0); at 20 steps both were
# below 0.1, at 60 the backbone-only start had caught up on these easy shapes.
STEPS = 30


def workspace(root: Path, classes: tuple[str, ...], seed: int) -> Path:
    archive = make_voc_zip(root / f"{len(classes)}.zip", SyntheticSpec(images=40, seed=seed, classes=classes))
    prepare(archive, root / f"ws{len(classes)}", PrepareOptions(val_ratio=0.2))
    return root / f"ws{len(classes)}"


@pytest.fixture(scope="module")
def served(trained_job, tmp_path_factory):
    """The trained 3-class detector as an archive on 127.0.0.1: (URL, its checkpoint prefix)."""
    root = tmp_path_factory.mktemp("detector")
    prefix = (
        trained_job
        / "checkpoints"
        / f"ckpt-{max(int(p.stem.split('-')[1]) for p in (trained_job / 'checkpoints').glob('ckpt-*.index'))}"
    )
    with tarfile.open(root / "detector.tar.gz", "w:gz") as archive:
        for file in prefix.parent.glob(prefix.name + ".*"):
            archive.add(file, arcname=f"detector/checkpoint/{file.name}")
        archive.add(trained_job / "params.yaml", arcname="detector/params.yaml")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/detector.tar.gz", prefix
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sets")
    return {1: workspace(root, ("circle",), seed=21), 2: workspace(root, ("circle", "square"), seed=22)}


def session_for(ws: Path, job_dir: Path, cache: Path, **request):
    from pipeline.train.config import TrainRequest, load_params
    from pipeline.train.hardware import detect_hardware
    from pipeline.train.job_folder import JobState
    from pipeline.train.launch import create_job
    from pipeline.train.session import Session

    job, _ = create_job(ws, TrainRequest("mobilenetv2-fpn", steps=STEPS, **request), job_dir, detect_hardware(), cache)
    params = load_params("retinanet_resnetfpn_coco", job.params)
    return Session(params, JobState(), job, keep_classifier=request.get("keep_classifier", False)), params


def test_a_two_class_fine_tune_restores_the_whole_head_but_its_class_layer(served, sets, tmp_path):
    import tensorflow as tf

    url, prefix = served
    session, params = session_for(sets[2], tmp_path / "job", tmp_path / "cache", pretrained_url=url, url_policy="any")
    start = session.start
    assert start.start == "detector" and start.modules == ("backbone", "decoder", "head")
    head = {name for name in start.restored if name.startswith("head/")}
    for tower in ("_cls_convs", "_cls_norms", "_box_convs", "_box_norms"):
        assert any(name.startswith(f"head/{tower}/") for name in head), tower
    assert {"head/_box_regressor/pointwise_kernel", "head/_box_regressor/bias"} <= head
    assert set(start.reinitialised) == set(CLASSIFIER) and start.unmatched == ()
    reader = tf.train.load_checkpoint(str(prefix))
    model = session.trainer.model
    regressor = model.head._box_regressor
    assert (regressor.bias.numpy() == reader.get_tensor("head/_box_regressor/bias/.ATTRIBUTES/VARIABLE_VALUE")).all()
    tower = model.head._cls_convs[0]
    kernel = reader.get_tensor("head/_cls_convs/0/pointwise_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert (tower.pointwise_kernel.numpy() == kernel).all()
    # Freshly initialised: the width of two classes (plus background) per anchor, the focal-loss prior bias.
    classifier = model.head._classifier
    anchors = len(params.task.model.anchor.aspect_ratios) * params.task.model.anchor.num_scales
    assert classifier.bias.shape == [anchors * 3]
    assert reader.get_variable_to_shape_map()["head/_classifier/bias/.ATTRIBUTES/VARIABLE_VALUE"] == [anchors * 4]
    assert classifier.bias.numpy() == pytest.approx([PRIOR_BIAS] * anchors * 3, abs=1e-6)
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["start"] == "checkpoint" and params.task.init_checkpoint_modules == "all"


def test_the_class_layer_is_kept_only_when_the_counts_match(served, sets, trained_job, tmp_path):
    url, _ = served
    with pytest.raises(TrainingError, match=r"head/_classifier/\w+ has shape .*class count differs"):
        session_for(sets[2], tmp_path / "two", tmp_path / "cache", pretrained_url=url, keep_classifier=True)
    three = Path(json.loads((trained_job / "job.json").read_text())["workspace"])
    session, _ = session_for(three, tmp_path / "three", tmp_path / "cache", pretrained_url=url, keep_classifier=True)
    assert session.start.reinitialised == () and set(CLASSIFIER) <= set(session.start.restored)


def test_a_recipe_or_shape_mismatch_is_an_error_that_names_it(served, sets, tmp_path):
    url, prefix = served
    swish = ("task.model.norm_activation.activation=swish",)
    with pytest.raises(UsageError, match=r"activation is 'swish', the checkpoint's 'relu'"):
        session_for(sets[1], tmp_path / "a", tmp_path / "cache", pretrained_url=url, overrides=swish)
    # A bare checkpoint has no params.yaml to compare with: the variables' shapes still are.
    wider = ("task.model.head.num_filters=96",)
    with pytest.raises(TrainingError, match=r"head/_\w+(/\d+)?/\w+ has shape \[.*64.*\], this model's \[.*96.*\]"):
        session_for(sets[1], tmp_path / "b", tmp_path / "cache", pretrained_url=str(prefix), overrides=wider)


def test_the_catalogue_imagenet_start_restores_the_whole_backbone_and_only_it(sets, tmp_path):
    import tensorflow as tf
    from official.vision.modeling.backbones import MobileNet

    from pipeline.train.catalogue import get_model

    spec = get_model("mobilenetv2-fpn")
    assert (
        spec.init_modules == ("backbone",)
        and spec.checkpoint_recipe["task.model.backbone.mobilenet.filter_size_scale"] == 1.0
    )
    # A Model Garden classification checkpoint keeps the backbone at the root, as the published one does.
    backbone = MobileNet(model_id="MobileNetV2", filter_size_scale=1.0)
    cache = tmp_path / "cache"
    _place_in_cache(cache, spec.checkpoint_url, tf.train.Checkpoint(backbone=backbone), tmp_path / "made")
    session, params = session_for(sets[1], tmp_path / "job", cache)
    assert params.task.model.backbone.mobilenet.filter_size_scale == 1.0  # not the CPU preset's 0.5
    start = session.start
    assert start.start == "backbone" and start.modules == ("backbone",)
    assert len(start.restored) == len(session.trainer.model.backbone.weights) and start.unmatched == ()
    assert not any(name.startswith(("head/", "decoder/")) for name in start.restored)
    for mine, theirs in zip(session.trainer.model.backbone.weights, backbone.weights, strict=True):
        assert (mine.numpy() == theirs.numpy()).all(), mine.name


def _place_in_cache(cache: Path, url: str, checkpoint, made: Path) -> None:
    """Where pipeline.train.weights keeps ``url``'s checkpoint once fetched (its cache layout, by contract)."""
    import hashlib

    saved = Path(checkpoint.write(str(made / "ckpt-180648")))
    entry = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    (entry / "checkpoint").mkdir(parents=True)
    for file in made.glob("ckpt-180648.*"):
        (entry / "checkpoint" / file.name).write_bytes(file.read_bytes())
    meta = {"source": url, "kind": "prefix", "sha256": "0" * 64, "prefix": f"checkpoint/{saved.name}"}
    (entry / "meta.json").write_text(json.dumps(meta))


def test_at_equal_steps_a_head_restoring_fine_tune_beats_a_backbone_only_one(served, sets, tmp_path):
    url, _ = served
    runs = {
        name: _train(sets[1], tmp_path / name, url, *extra)
        for name, extra in (("detector", ()), ("backbone", ("task.init_checkpoint_modules=[backbone]",)))
    }
    results = {name: _finish(process, tmp_path / name) for name, process in runs.items()}
    detector, backbone = results["detector"], results["backbone"]
    assert detector["started"]["restored"] > backbone["started"]["restored"] > 0
    assert detector["started"]["reinitialised"] == 3 and backbone["started"]["reinitialised"] == 0
    assert detector["AP50"] > backbone["AP50"] + 0.2, results


def _train(ws: Path, job: Path, url: str, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipeline", "train", str(ws), "--model", "mobilenetv2-fpn"]
    command += ["--pretrained-url", url, "--steps", str(STEPS), "--batch-size", "4", "--job-dir", str(job)]
    command += ["--weights-cache", str(job.parent / "cache"), "--json", f"trainer.validation_interval={STEPS}"]
    command += ["trainer.steps_per_loop=10", f"trainer.checkpoint_interval={STEPS}", *overrides]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, job: Path) -> dict:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    events = read_events(job / "events.jsonl")
    (evaluation,) = [e for e in events if e["event"] == "eval"]
    return {"started": events[0], "AP50": evaluation["AP50"]}


def test_a_coco_catalogue_start_restores_the_head_a_model_builds_only_when_called(sets, tmp_path):
    """spinenet49-mobile's head makes its variables on its first call, after the trainer is built: the restore
    must build them first, or the head would be skipped. The detector is a 3-class model of the same recipe."""
    import tensorflow as tf

    from pipeline.train.restore import build_variables

    small = ("task.model.input_size=[128,128,3]",)
    three = Path(sets[1].parent / "ws3")
    if not three.exists():
        three = workspace(sets[1].parent, ("circle", "square", "triangle"), seed=23)
    source, _ = _spinenet_session(three, tmp_path / "source", tmp_path / "cache", pretrained=False, overrides=small)
    build_variables(source.trainer.model, [128, 128, 3])
    prefix = tf.train.Checkpoint(**source.trainer.model.checkpoint_items).write(str(tmp_path / "coco" / "ckpt-1"))
    session, params = _spinenet_session(
        sets[2], tmp_path / "job", tmp_path / "cache", pretrained_url=prefix, overrides=small
    )
    assert params.task.model.norm_activation.activation == "hard_swish"
    start = session.start
    assert start.start == "detector" and start.modules == ("backbone", "head")  # SpineNet's decoder is the identity
    assert {"head/_cls_convs/0/depthwise_kernel", "head/_box_regressor/bias"} <= set(start.restored)
    assert set(start.reinitialised) == set(CLASSIFIER) and start.unmatched == ()


def _spinenet_session(ws: Path, job_dir: Path, cache: Path, **request):
    from pipeline.train.config import TrainRequest, load_params
    from pipeline.train.hardware import detect_hardware
    from pipeline.train.job_folder import JobState
    from pipeline.train.launch import create_job
    from pipeline.train.session import Session

    job, _ = create_job(ws, TrainRequest("spinenet49-mobile", steps=2, **request), job_dir, detect_hardware(), cache)
    params = load_params("retinanet_mobile_coco", job.params)
    return Session(params, JobState(), job), params
