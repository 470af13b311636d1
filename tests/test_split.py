"""Properties of the seeded, stratified split, checked on random sample lists."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.reports import ClassWarning, SplitReport
from pipeline.data.samples import SPLITS, Box, Sample
from pipeline.data.split import split_samples, split_stats, split_warnings
from pipeline.errors import UsageError

LABELS = "ABCD"


def make(sample_id: int, labels, sha: str | None = None, folder: str | None = None) -> Sample:
    return Sample(
        id=sample_id,
        image=f"img{sample_id}.jpg",
        annotation=None,
        width=100,
        height=100,
        boxes=tuple(Box(label, 1, 1, 10, 10) for label in labels),
        sha256=sha or f"{sample_id:064x}",
        size_bytes=1,
        folder_split=folder,
    )


@st.composite
def sample_lists(draw, min_size=2, max_size=24, folders=False, single_label=False):
    count = draw(st.integers(min_size, max_size))
    ids = draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count, unique=True))
    samples: list[Sample] = []
    for sample_id in ids:
        labels = draw(st.lists(st.sampled_from(LABELS), max_size=1 if single_label else 3))  # []: negative
        copy_of = draw(st.sampled_from(samples)) if samples and draw(st.integers(0, 4)) == 0 else None
        sha = copy_of.sha256 if copy_of else f"{sample_id:064x}"
        if copy_of and single_label:
            labels = [box.label for box in copy_of.boxes]  # a copy annotated like its original
        folder = draw(st.sampled_from([None, *SPLITS])) if folders else None
        samples.append(make(sample_id, labels, sha, folder))
    if len({s.sha256 for s in samples}) < 2:  # a split needs two distinct images
        samples.append(make(20_000, "A"))
    return samples


ratios = st.tuples(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5]), st.sampled_from([0.0, 0.0, 0.1, 0.25]))


def units_of(samples):
    """sha256 -> (sample ids, labels of the whole duplicate group)."""
    groups = defaultdict(lambda: ([], set()))
    for sample in samples:
        groups[sample.sha256][0].append(sample.id)
        groups[sample.sha256][1].update(sample.labels)
    return list(groups.values())


def needs(units, test_ratio):
    """class -> splits it must appear in, following the documented rule."""
    counts = defaultdict(int)
    for _, labels in units:
        for label in labels:
            counts[label] += 1
    return {
        label: {"train", "val"} | ({"test"} if test_ratio > 0 and n >= 3 else set())
        for label, n in counts.items()
        if n >= 2
    }


def unmet(units, unit_splits, required):
    present = defaultdict(set)
    for (_, labels), split in zip(units, unit_splits):
        for label in labels:
            present[label].add(split)
    return {label for label, splits in required.items() if not splits <= present[label]}


def can_stratify(units, required) -> bool:
    """Brute force over label sets: units with the same set are interchangeable, and
    spreading a set over more splits never hurts, so each set takes min(count, splits) splits."""
    choices = sorted(set().union(*required.values()))
    kinds = Counter(frozenset(labels & required.keys()) for _, labels in units)
    kinds.pop(frozenset(), None)
    options = [itertools.combinations(choices, min(count, len(choices))) for count in kinds.values()]
    for combo in itertools.product(*options):
        present = defaultdict(set)
        for labels, splits in zip(kinds, combo):
            for label in labels:
                present[label].update(splits)
        if all(splits <= present[label] for label, splits in required.items()):
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(sample_lists(), ratios, st.integers(0, 2**32), st.data())
def test_reproducible_in_any_input_order(samples, ratio, seed, data):
    shuffled = data.draw(st.permutations(samples))
    first = split_samples(samples, *ratio, seed=seed)
    assert split_samples(shuffled, *ratio, seed=seed) == first
    assert split_samples(samples, *ratio, seed=seed) == first


@settings(max_examples=200, deadline=None)
@given(sample_lists(max_size=9), ratios, st.integers(0, 2**32))
def test_complete_disjoint_duplicates_together_stratified_and_sized(samples, ratio, seed):
    val_ratio, test_ratio = ratio
    assignment = split_samples(samples, val_ratio, test_ratio, seed=seed)

    assert sorted(assignment) == sorted(s.id for s in samples)  # every sample, each once (dict keys)
    assert set(assignment.values()) <= set(SPLITS)
    units = units_of(samples)
    unit_splits = []
    for ids, _ in units:
        assert len({assignment[i] for i in ids}) == 1, "copies of one image were split apart"
        unit_splits.append(assignment[ids[0]])

    required = needs(units, test_ratio)
    if unmet(units, unit_splits, required):
        assert not can_stratify(units, required), "a stratified split existed but was not found"

    check_sizes(units, unit_splits, required, val_ratio, test_ratio)


def check_sizes(units, unit_splits, required, val_ratio, test_ratio):
    """Sizes follow the ratios to within one unit, except where stratification or a too-small train set rules."""
    n = len(units)
    sizes = Counter(unit_splits)
    assert sizes["train"] >= 1 and sizes["val"] >= 1  # always something to train on and something to score
    if test_ratio == 0:
        assert sizes["test"] == 0
    # Above the ratio by more than rounding only for stratification: one unit per class that needs the split.
    assert sizes["val"] <= max(val_ratio * n + 1, len(required))
    assert sizes["test"] <= max(test_ratio * n + 1, len(required))
    if sizes["val"] < val_ratio * n - 1 or sizes["test"] < test_ratio * n - 1:
        # Short of the ratio only when training has nothing to give: one unit, or each unit is some class's last.
        train_counts = Counter(
            label for (_, labels), split in zip(units, unit_splits) if split == "train" for label in labels
        )
        train_units = [labels for (_, labels), split in zip(units, unit_splits) if split == "train"]
        assert len(train_units) == 1 or all(
            any(train_counts[label] == 1 for label in labels if label in required) for labels in train_units
        )


@settings(max_examples=100, deadline=None)
@given(sample_lists(max_size=40), st.integers(0, 2**32))
def test_more_validation_never_means_fewer_validation_images(samples, seed):
    sizes = [
        list(split_samples(samples, ratio, seed=seed).values()).count("val") for ratio in (0.05, 0.1, 0.2, 0.3, 0.5)
    ]
    assert sizes == sorted(sizes)


@settings(max_examples=60, deadline=None)
@given(sample_lists(min_size=30, max_size=120, single_label=True), ratios, st.integers(0, 2**32))
def test_single_label_images_are_always_stratified(samples, ratio, seed):
    val_ratio, test_ratio = ratio
    assignment = split_samples(samples, val_ratio, test_ratio, seed=seed)
    units = units_of(samples)
    unit_splits = [assignment[ids[0]] for ids, _ in units]
    required = needs(units, test_ratio)
    assert not unmet(units, unit_splits, required)  # one class per unit: always possible
    check_sizes(units, unit_splits, required, val_ratio, test_ratio)


def test_seed_changes_the_split():
    samples = [make(i, "AB"[i % 2]) for i in range(200)]
    assert split_samples(samples, 0.2, seed=1) != split_samples(samples, 0.2, seed=2)


def test_rare_class_gets_val_and_train_even_at_a_small_ratio():
    samples = [make(i, "A") for i in range(100)] + [make(100, "rare"), make(101, "rare")]
    assignment = split_samples(samples, 0.01)
    assert {assignment[100], assignment[101]} == {"train", "val"}
    # 1% of 102 is one image, but 'A' needs a val image of its own too.
    assert list(assignment.values()).count("val") == 2


def test_three_units_with_test_ratio_cover_every_split():
    samples = [make(1, "A"), make(2, "A"), make(3, "A"), make(4, "")]
    assignment = split_samples(samples, 0.2, 0.2)
    assert {assignment[i] for i in (1, 2, 3)} == {"train", "val", "test"}


def test_duplicates_count_once_for_the_minimum():
    samples = [make(1, "A", sha="x"), make(2, "A", sha="x")]
    with pytest.raises(UsageError, match="at least 2") as refused:
        split_samples(samples, 0.2)
    assert refused.value.kind == "too_few_images" and refused.value.details == {"images": 1}
    with pytest.raises(UsageError, match="at least 2"):
        split_samples([make(1, "A")], 0.2)


@pytest.mark.parametrize(
    "val_ratio, test_ratio",
    [
        (0, 0),
        (1, 0),
        (-0.1, 0),
        (1.5, 0),
        (math.nan, 0),
        (0.2, -0.1),
        (0.2, 1),
        (0.5, 0.5),
        (0.7, 0.4),
    ],
)
def test_ratios_out_of_range_are_refused(val_ratio, test_ratio):
    samples = [make(i, "A") for i in range(10)]
    with pytest.raises(UsageError, match="below 1") as refused:
        split_samples(samples, val_ratio, test_ratio)
    assert refused.value.kind in ("bad_val_ratio", "bad_test_ratio", "ratios_too_large")


# ---------------------------------------------------------------- folders


def test_folders_are_kept_and_the_rest_is_split_by_ratio():
    samples = (
        [make(i, "A", folder="train") for i in range(10)]
        + [make(i, "A", folder="val") for i in range(10, 13)]
        + [make(i, "A", folder="test") for i in range(13, 15)]
        + [make(i, "B") for i in range(15, 25)]
    )
    assignment = split_samples(samples, 0.2, use_folders=True)
    for sample in samples[:15]:
        assert assignment[sample.id] == sample.folder_split
    loose = [assignment[i] for i in range(15, 25)]
    assert loose.count("val") == 2 and loose.count("train") == 8


def test_without_a_val_folder_val_is_carved_from_the_train_folder():
    samples = [make(i, "AB"[i % 2], folder="train") for i in range(20)] + [
        make(i, "A", folder="test") for i in range(20, 25)
    ]
    assignment = split_samples(samples, 0.25, use_folders=True)
    trained = [assignment[i] for i in range(20)]
    assert trained.count("val") == 5 and trained.count("test") == 0
    assert {assignment[i] for i in range(0, 20, 2)} == {"train", "val"}  # stratified too
    assert all(assignment[i] == "test" for i in range(20, 25))


def test_no_folders_is_a_usage_error():
    samples = [make(i, "A") for i in range(5)]
    with pytest.raises(UsageError, match="no train/valid/test folders were found in the zip; split by ratio"):
        split_samples(samples, 0.2, use_folders=True)


def test_copies_in_two_folders_follow_the_held_out_one():
    samples = [
        make(1, "A", sha="x", folder="train"),
        make(2, "A", sha="x", folder="val"),
        make(3, "A", folder="train"),
        make(4, "A", sha="y", folder="test"),
        make(5, "A", sha="y"),
    ]
    assignment = split_samples(samples, 0.2, use_folders=True)
    assert assignment == {1: "val", 2: "val", 3: "train", 4: "test", 5: "test"}


def test_folders_that_leave_no_training_images_are_refused():
    samples = [make(i, "A", folder="test") for i in range(4)]
    with pytest.raises(UsageError, match="no training images") as refused:
        split_samples(samples, 0.2, use_folders=True)
    assert refused.value.kind == "empty_split_folder" and refused.value.details == {"split": "train"}


@settings(max_examples=100, deadline=None)
@given(sample_lists(max_size=16, folders=True), st.integers(0, 2**32))
def test_folder_mode_keeps_folders_and_duplicates_together(samples, seed):
    try:
        assignment = split_samples(samples, 0.2, seed=seed, use_folders=True)
    except UsageError as error:  # no folder at all, or no train/val left
        assert "no train/valid/test folders" in str(error) or "the folders leave no" in str(error)
        return
    groups = defaultdict(list)
    for sample in samples:
        groups[sample.sha256].append(sample)
    # A group in several folders follows its most held-out copy.
    folder_of = {
        sha: max((s.folder_split for s in group if s.folder_split), key=SPLITS.index, default=None)
        for sha, group in groups.items()
    }
    has_val_folder = "val" in folder_of.values()
    for sha, group in groups.items():
        assert len({assignment[s.id] for s in group}) == 1
        if folder_of[sha] is not None and (has_val_folder or folder_of[sha] != "train"):
            assert assignment[group[0].id] == folder_of[sha]
    assert {"train", "val"} <= set(assignment.values())
    assert split_samples(list(reversed(samples)), 0.2, seed=seed, use_folders=True) == assignment


# ---------------------------------------------------------------- stats and warnings


def test_stats_count_images_boxes_and_final_classes_of_used_splits():
    samples = [make(1, ["WBC", "RBC", "RBC"]), make(2, ["wbc"]), make(3, []), make(4, ["junk"])]
    assignment = {1: "train", 2: "train", 3: "val", 4: "val"}
    final = {"WBC": "WBC", "wbc": "WBC", "RBC": "RBC", "junk": None}.get
    stats = split_stats(samples, assignment, final)
    assert set(stats) == {"train", "val"}
    assert stats["train"].images == 2 and stats["train"].boxes == 4
    assert stats["train"].classes == {"RBC": 2, "WBC": 2}
    assert stats["val"].images == 2 and stats["val"].boxes == 0 and stats["val"].classes == {}
    assert split_stats(samples, assignment)["val"].classes == {"junk": 1}


def test_warnings_name_the_class_and_what_to_do():
    samples = (
        [make(i, ["WBC", "RBC"]) for i in range(3)]
        + [make(i, ["RBC"]) for i in range(3, 40)]
        + [make(40, ["WBC"]), make(41, ["RBC"]), make(42, ["RBC"]), make(43, ["gone"])]
    )
    assignment = {s.id: "train" for s in samples} | {40: "val", 41: "val", 42: "val", 43: "val"}
    warnings = split_warnings(samples, assignment, lambda label: None if label == "gone" else label)
    assert warnings == (ClassWarning("few_train", "WBC", "train", 3), ClassWarning("few_val", "WBC", "val", 1))
    assert [w.sentence for w in warnings] == [
        "class 'WBC' has only 3 training images; detectors need ~50+ per class — add more images of it",
        "class 'WBC' has only 1 validation image; its score will be noisy — add more images of it",
    ]


def test_warnings_for_a_class_missing_from_a_split():
    samples = [make(1, "A"), make(2, "B"), make(3, "B")]
    warnings = split_warnings(samples, {1: "val", 2: "train", 3: "test"})
    assert {(w.kind, w.name, w.split, w.count) for w in warnings} == {
        ("no_train", "A", "train", 0),
        ("few_val", "A", "val", 1),
        ("no_test", "A", "test", 0),
        ("few_train", "B", "train", 1),
        ("no_val", "B", "val", 0),
    }
    sentences = [w.sentence for w in warnings]
    assert "class 'A' has no training images; the detector cannot learn it — add more images of it" in sentences
    assert any(w.startswith("class 'B' has no validation images") for w in sentences)


def test_a_split_report_keeps_its_sentences_and_adds_their_kinds_to_json():
    report = SplitReport(1, {"val": 0.1}, False, {}, (ClassWarning("no_val", "B", "val", 0),))
    payload = report.to_json()
    assert payload["warnings"] == [
        "class 'B' has no validation images; its accuracy cannot be measured — add more images of it"
    ]
    assert payload["class_warnings"] == [{"kind": "no_val", "name": "B", "split": "val", "count": 0}]


def test_a_balanced_dataset_has_no_warnings():
    samples = [make(i, "AB"[i % 2]) for i in range(200)]
    assignment = split_samples(samples, 0.2)
    assert split_warnings(samples, assignment) == ()
    stats = split_stats(samples, assignment)
    assert set(stats) == {"train", "val"} and stats["val"].images == 40
