"""The pipeline reports kinds and parameters; the bot words them (issue 11, "Chat words only").

Every error kind pipeline/ raises that can reach a chat is worded in both catalogues from its details,
every problem kind too, and no wording the bot sends for them holds CLI syntax: an option (``--x``),
``python -m`` or a backticked command. Real errors are raised here where that is cheap, so the details
the wording reads are the ones the pipeline gives."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from bot.texts import english, ko
from pipeline.data import class_edits
from pipeline.data.dataset_health import inspect_files
from pipeline.data.images import PixelBudget
from pipeline.data.ingest import ExtractLimits, extract_zip
from pipeline.data.pair_check import check_dataset_pixels
from pipeline.data.reports import CLASS_WARNINGS, PROBLEM_KINDS
from pipeline.data.split import split_samples
from pipeline.errors import PipelineError
from pipeline.train.catalogue import REASONS, get_model, recommend
from pipeline.train.hardware import Hardware
from pipeline.train.job_folder import JobPaths
from pipeline.train.session import describe_failure
from tests.builders import image_bytes, pair, write_zip, xml
from tests.test_split import make

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = {"en": english, "ko": ko}
HANGUL = re.compile(r"[\uac00-\ud7a3]")
CLI_SYNTAX = re.compile(r"(?<![\w-])--\w|python -m|`")

# Kinds a chat user cannot meet, each with why; everything else pipeline/ raises must be worded.
NOT_IN_CHAT = {
    "dataset_rejected": "a class default; the fallback's lead words it",
    "label_map_error": "a --label-map file's syntax: the chat sends no label map",
    "workspace_error": "a class default; the fallback's lead words it",
    "usage_error": "a class default; the fallback's lead words it",
    "training_error": "a class default; the fallback's lead words it",
    "export_error": "a class default; the fallback's lead words it",
    "destination_not_empty": "the CLI's --out folder; the bot makes a new folder for every upload",
    "hardware_spec": "--assume-hardware, a CLI option",
    "override_rejected": "raw Model Garden overrides: the chat's settings are an allowlist (chat_overrides)",
    "recipe_conflict": "the same: no chat setting touches a checkpoint's recipe",
    "not_a_job": "a CLI job folder; the bot's come from the store",
    "step_missing": "a CLI workspace whose steps were not run; the bot runs them all",
    "bad_test_ratio": "--test-ratio: /split sets the validation share only",
    "ratios_too_large": "the same",
    "no_split_folders": "--use-folders: /split splits by ratio",
    "fetch_error": "bot/uploads.py words a refused URL itself (URL_REFUSED)",
    "fetch_too_large": "bot/uploads.py words it itself (url_too_large)",
    "chat_option": "bot/training.py words it itself (train_setting_refused)",
    "cluster_error": "a class default; the fallback's lead words it",
    "storage_not_shared": "found at start-up, which it stops (bot/cluster.py): no chat yet",
    "no_gpu_nodes": "the same",
}
_RAISED = [
    re.compile(r'kind="([a-z_]+)"'),  # raise SomeError(..., kind="x")
    re.compile(r'refuse\(\s*"([a-z_]+)"'),  # a zip's refusal
    re.compile(r'return "([a-z_]+)", message, details'),  # describe_failure's causes
    re.compile(r'class \w+\([\w.]*(?:Error|Rejected)\):\s*"""(?:[^"]|"(?!""))*"""\s*kind = "([a-z_]+)"'),
]


def raised_kinds() -> set[str]:
    kinds = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _RAISED:
            kinds.update(pattern.findall(text))
    return kinds


def test_the_scan_finds_kinds_of_every_shape():
    kinds = raised_kinds()
    assert {"bad_val_ratio", "corrupt_zip", "out_of_memory", "weights_error", "chat_option"} <= kinds
    assert {"archive", "detector"}.isdisjoint(kinds)  # a StartPoint's kind is no error's


def test_every_kind_that_reaches_the_chat_is_worded_in_both_languages():
    kinds = raised_kinds()
    assert not set(NOT_IN_CHAT) - kinds, "a kind listed as not in chat is raised nowhere any more"
    for name, catalogue in CATALOGUES.items():
        missing = kinds - set(NOT_IN_CHAT) - set(catalogue.WORDED_ERRORS)
        assert not missing, f"{name} has no words for {sorted(missing)}"
        stale = set(catalogue.WORDED_ERRORS) - kinds
        assert not stale, f"{name} words kinds nothing raises: {sorted(stale)}"


# Every parameter any kind's words read: each wording picks its own.
EVERY_DETAIL = {
    "where": ["cats.zip", "inner.zip"],
    "limit": 2**30,
    "one_file": True,
    "size": 2**31,
    "levels": 1,
    "ratio": 200.0,
    "files": 3,
    "examples": ["a.txt", "b.doc"],
    "method": 9,
    "gigapixels": 41.5,
    "limit_gigapixels": 40.0,
    "largest": "big.jpg",
    "largest_mp": 50,
    "images": 1,
    "formats": ["voc", "coco"],
    "name": " x",
    "problem": "spaces",
    "missing": ["dgo"],
    "classes": ["cat", "dog"],
    "text": "a-b",
    "split": "train",
    "models": ["mobilenetv2-fpn"],
    "train": 0,
    "val": 3,
    "step": 40,
    "recoveries": 3,
    "lr_scale": 0.125,
    "batch": 2,
    "planned": 2,
    "visible": 0,
    "error": "ValueError",
    "metric": "AP",
    "export": 0.1,
    "training": 0.3,
    "tolerance": 0.02,
}
SENTINEL = "THE PIPELINE'S OWN MESSAGE --option `python -m pipeline x`"
QUOTED = {"config", "internal"}  # an error of Model Garden's or TensorFlow's: the pipeline's message is its words


@pytest.mark.parametrize("language", CATALOGUES)
def test_every_worded_error_is_chat_words_only(language):
    catalogue = CATALOGUES[language]
    for kind in catalogue.WORDED_ERRORS:
        message = "Model Garden said: bad dtype." if kind in QUOTED else SENTINEL
        for details in (
            EVERY_DETAIL,
            EVERY_DETAIL | {"one_file": False},
            {k: v for k, v in EVERY_DETAIL.items() if k != "batch"},
        ):
            words = catalogue.pipeline_error(kind, message, details)
            assert "THE PIPELINE'S" not in words, f"{kind} fell back to the pipeline's message"
            assert not CLI_SYNTAX.search(words), f"{language} {kind}: {words}"
            assert language == "en" or HANGUL.search(words), words


def test_an_unexpected_training_error_is_quoted_and_its_words_are_chat_words(tmp_path):
    """Model Garden's and TensorFlow's errors cannot be worded from a kind: the pipeline's message quotes them."""
    job = JobPaths(tmp_path / "job")
    for error, step in ((ValueError("bad dtype"), None), (RuntimeError("disk"), 7), (KeyError("x"), 3)):
        cause, message, details = describe_failure(error, job, step)
        assert cause in QUOTED and details["error"] == type(error).__name__
        assert not CLI_SYNTAX.search(message), message
        assert message in english.pipeline_error(cause, message, details)
        assert message in ko.pipeline_error(cause, message, details) and "자세한 내용(영어)" in ko.pipeline_error(
            cause, message, details
        )


def test_an_unknown_kind_keeps_the_pipelines_message_after_a_lead():
    assert english.pipeline_error("mystery", "What went wrong.") == "What went wrong."
    assert ko.pipeline_error("mystery", "What went wrong.") == "처리하지 못했어요. 자세한 내용(영어): What went wrong."
    # Words that need a detail the error lacks fall back the same way.
    assert english.pipeline_error("too_few_images", "Only one image.", {}) == "Only one image."
    assert (
        ko.pipeline_error("internal_error", "파이프라인이 멈췄어요") == "파이프라인이 멈췄어요"
    )  # the bot's own words


def _raised(call) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        call()
    return caught.value


def real_errors(tmp_path) -> list[PipelineError]:
    """Errors as the pipeline raises them, with the details it gives."""
    empty = write_zip(tmp_path / "empty.zip", {"__MACOSX/._a": b"x", ".DS_Store": b"x"})
    texts_only = write_zip(tmp_path / "notes.zip", {"a.txt": b"x", "b.md": b"y"})
    big = write_zip(tmp_path / "big.zip", {"a.jpg": b"\0" * 5000})
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(image_bytes())
    cut = tmp_path / "cut.zip"
    cut.write_bytes(big.read_bytes()[:-30])
    pixels = tmp_path / "px"
    pixels.mkdir()
    (pixels / "a.jpg").write_bytes(image_bytes(size=(640, 480)))
    known = {"cat", "dog"}
    return [
        _raised(lambda: extract_zip(empty, tmp_path / "out1")),
        _raised(lambda: extract_zip(texts_only, tmp_path / "out2")),
        _raised(lambda: extract_zip(big, tmp_path / "out3", ExtractLimits(max_entry_bytes=1000))),
        _raised(lambda: extract_zip(big, tmp_path / "out4", ExtractLimits(max_total_bytes=1000))),
        _raised(lambda: extract_zip(big, tmp_path / "out5", ExtractLimits(max_ratio=2.0))),
        _raised(lambda: extract_zip(big, tmp_path / "out6", ExtractLimits(max_entries=0))),
        _raised(lambda: extract_zip(not_zip, tmp_path / "out7")),
        _raised(lambda: extract_zip(cut, tmp_path / "out8")),
        _raised(lambda: check_dataset_pixels(pixels, ["a.jpg"], PixelBudget(dataset=1000))),
        _raised(lambda: class_edits.rename(class_edits.LabelEdits(), known, "cat", " cat")),
        _raised(lambda: class_edits.merge(class_edits.LabelEdits(), known, ["cat", "cow"], "pet")),
        _raised(lambda: class_edits.merge(class_edits.LabelEdits(), known, [], "pet")),
        _raised(lambda: class_edits.parse_rename("cat")),
        _raised(lambda: class_edits.parse_merge("cat,dog")),
        _raised(lambda: split_samples([make(i, "A") for i in range(5)], 5.0)),
        _raised(lambda: split_samples([make(1, "A")], 0.2)),
        _raised(lambda: get_model("yolo")),
    ]


def test_real_errors_are_worded_from_their_details(tmp_path):
    errors = real_errors(tmp_path)
    assert {error.kind for error in errors} >= {"empty_zip", "no_images", "too_large", "not_a_zip", "corrupt_zip"}
    for error in errors:
        for language, catalogue in CATALOGUES.items():
            words = catalogue.pipeline_error(error.kind, SENTINEL, error.details)
            assert "THE PIPELINE'S" not in words, f"{language} {error.kind} {error.details}"
            assert not CLI_SYNTAX.search(words), f"{language} {error.kind}: {words}"


def test_a_nan_alert_is_worded_from_its_event():
    nan = {"event": "nan", "step": 30, "exploded": False, "rolled_back_to": 20, "lr_scale": 0.5, "message": SENTINEL}
    words = english.nan_alert("job1", nan)
    assert "at step 30: rolling back to step 20 and lowering the learning rate to x0.5" in words
    assert "스텝 30" in ko.nan_alert("job1", nan) and "x0.5" in ko.nan_alert("job1", nan)
    assert "THE PIPELINE'S" not in words + ko.nan_alert("job1", nan)


def test_a_training_failure_is_worded_from_its_cause():
    event = {"event": "failed", "step": 40, "stage": "training", "cause": "loss_diverged", "resumable": False}
    event["details"] = {"step": 40, "recoveries": 3, "lr_scale": 0.125}
    words = english.failed("job1", event, SENTINEL)
    assert "/train lr=0.001" in words and "THE PIPELINE'S" not in words and not CLI_SYNTAX.search(words)
    assert "스텝 40" in ko.failed("job1", event, SENTINEL)
    unexplained = {"event": "failed", "step": 0, "stage": "start", "cause": "mystery", "resumable": False}
    assert SENTINEL in english.failed("job1", unexplained, SENTINEL)  # a cause not worded shows the message


# --- problems, split warnings, recommendations ------------------------------------------------------------


def problem_zip_entries() -> dict[str, bytes]:
    entries = pair("a", objects=[("Cat", 1, 1, 30, 30), ("cat", -20, 2, 30, 30), ("cat", 5, 5, 5, 9)])
    entries |= pair("b", objects=[("cat", 2, 2, 20, 20)]) | {"b2.jpg": pair("b")["b.jpg"]}
    entries |= {"orphan.xml": xml("nothing.jpg", (64, 48), [("cat", 1, 1, 9, 9)]), "c.jpg": image_bytes()}
    entries |= {"d.jpg": b"not a jpeg", "d.xml": xml("d.jpg", (64, 48), [("cat", 1, 1, 9, 9)]), "e.gif": b"GIF89a"}
    entries |= {"f.jpg": image_bytes(size=(64, 48)), "f.xml": xml("f.jpg", (128, 96), [("cat", 2, 2, 40, 40)])}
    return entries


def test_real_problems_are_worded_from_their_parameters(tmp_path):
    root = tmp_path / "src"
    entries = problem_zip_entries()
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    _, report = inspect_files(root, tuple(entries), workers=1)
    problems = [asdict(p) for p in report.problems]
    found = {p["kind"] for p in problems}
    assert found >= {"label_variant", "box_clipped", "box_dropped", "annotation_without_image", "bad_image"}
    assert found >= {"image_without_annotation", "unsupported_file", "duplicate_image", "size_mismatch"}
    for problem in problems:
        for language, catalogue in CATALOGUES.items():
            words = f"{catalogue.problem_detail(problem)} / {catalogue.problem_action(problem)}"
            assert not CLI_SYNTAX.search(words), f"{language}: {words}"
            assert language == "en" or HANGUL.search(catalogue.problem_detail(problem)), words
    (variant,) = [p for p in problems if p["kind"] == "label_variant"]
    assert "/labels merge Cat,cat=cat" in english.problem_action(variant) and "`" in variant["action"]


@pytest.mark.parametrize("language", CATALOGUES)
def test_every_problem_kind_warning_and_reason_is_worded_without_cli_syntax(language):
    catalogue = CATALOGUES[language]
    assert set(catalogue.WORDED_PROBLEMS) == set(PROBLEM_KINDS)
    params = {"names": ["Cat", "cat"], "into": "cat", "copies": ["b.jpg"], "label": "x", "images": 2} | {
        "label_map": "map.pbtxt",
        "name": "x",
        "id": 1,
        "described_by": "a.xml",
        "image": "a.jpg",
        "reason": "outside",
    }
    for kind in PROBLEM_KINDS:
        problem = {"kind": kind, "file": "a.xml", "detail": SENTINEL, "action": SENTINEL, "params": params}
        words = (
            f"{catalogue.problem_name(kind)}: {catalogue.problem_detail(problem)} / {catalogue.problem_action(problem)}"
        )
        assert "THE PIPELINE'S" not in words and not CLI_SYNTAX.search(words), f"{kind}: {words}"
    for kind in CLASS_WARNINGS:
        assert not CLI_SYNTAX.search(catalogue.class_warning({"kind": kind, "name": "A", "split": "val", "count": 1}))
    for images in (50, 5000):
        for machine in (
            Hardware(cpu_cores=2),
            Hardware(gpus=1, gpu_memory_mb=4096),
            Hardware(gpus=2, gpu_memory_mb=81920),
        ):
            choice = recommend(images, machine)
            assert choice.kind in REASONS
            assert not CLI_SYNTAX.search(catalogue.recommendation(choice.kind, choice.params))


def test_the_cli_keeps_its_own_english():
    """The pipeline's sentences are the CLI's: they may name its options, and stay as they were."""
    variant = {"names": ["Cat", "cat"], "into": "cat"}
    assert recommend(5000, Hardware(gpus=2, gpu_memory_mb=16384)).reason == (
        "5000 labelled images and 2 GPUs (16 GB each): the COCO-pretrained ResNet-50 FPN is the accurate choice"
    )
    assert "/labels merge Cat,cat=cat" in english.problem_action(
        {"kind": "label_variant", "file": "a.xml", "detail": "", "action": "", "params": variant}
    )
