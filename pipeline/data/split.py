"""Seeded, stratified train/val(/test) split of the checked samples.

The result is a manifest (sample id -> split) that the record writer follows, so
no image is ever copied. Byte-identical images form one unit and always share a
split, otherwise validation would score images the model was trained on.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.data.reports import ClassWarning, SplitStats
from pipeline.data.samples import SPLITS, Sample
from pipeline.errors import UsageError

# Backtracking steps allowed when placing rare classes; real datasets need about
# one step per class, so running out means the classes cannot all be stratified.
_SEARCH_BUDGET = 20_000
# When copies of one image sit in different folders, the held-out copy decides,
# so the evaluation set the user built keeps all its images.
_FOLDER_PRIORITY = {"train": 0, "val": 1, "test": 2}
_MIN_TRAIN_IMAGES = 10
_MIN_VAL_IMAGES = 2


@dataclass(frozen=True)
class _Unit:
    """Samples with the same bytes (sha256), which must share a split."""

    ids: tuple[int, ...]
    labels: frozenset[str]
    folder: str | None


def _same(label: str) -> str | None:
    return label


def _check_ratios(val_ratio: float, test_ratio: float) -> None:
    if not 0 < val_ratio < 1:
        raise UsageError(
            f"the validation ratio {val_ratio} is out of range: it must be above 0 and below 1 "
            "(0.1 to 0.2 is usual), e.g. --val-ratio 0.15.",
            kind="bad_val_ratio",
            details={"ratio": val_ratio},
        )
    if not 0 <= test_ratio < 1:
        raise UsageError(
            f"the test ratio {test_ratio} is out of range: it must be 0 (no test split) or "
            "above 0 and below 1, e.g. --test-ratio 0.1.",
            kind="bad_test_ratio",
            details={"ratio": test_ratio},
        )
    if val_ratio + test_ratio >= 1:
        raise UsageError(
            f"the validation and test ratios add up to {val_ratio + test_ratio:g}, which leaves "
            "nothing to train on: together they must stay below 1, e.g. --val-ratio 0.15 "
            "--test-ratio 0.1.",
            kind="ratios_too_large",
            details={"val": val_ratio, "test": test_ratio},
        )


def _units(samples: Sequence[Sample]) -> list[_Unit]:
    """Duplicate groups in order of their smallest sample id, whatever the input order."""
    groups: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.id):
        groups.setdefault(sample.sha256, []).append(sample)
    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique")
    units = []
    for members in groups.values():
        folders = [s.folder_split for s in members if s.folder_split is not None]
        unknown = set(folders) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown folder split {sorted(unknown)}; expected one of {SPLITS}")
        units.append(
            _Unit(
                ids=tuple(s.id for s in members),
                labels=frozenset().union(*(s.labels for s in members)),
                folder=max(folders, key=_FOLDER_PRIORITY.__getitem__) if folders else None,
            )
        )
    return units


def _targets(n_units: int, val_ratio: float, test_ratio: float) -> tuple[int, int]:
    """Units for val and test; train always keeps at least one."""
    n_val = min(round(n_units * val_ratio), max(n_units - 1, 0))
    if n_units >= 2:
        n_val = max(n_val, 1)
    n_test = round(n_units * test_ratio)
    if test_ratio > 0 and n_units >= 3:
        n_test = max(n_test, 1)
    return n_val, max(0, min(n_test, n_units - 1 - n_val))


def _requirements(members: dict[str, list[int]], with_test: bool) -> list[tuple[str, str]]:
    """(class, split) pairs to cover, rarest classes first: they have the fewest choices."""
    needs = []
    for label in sorted(members, key=lambda name: (len(members[name]), name)):
        count = len(members[label])
        if count >= 2:
            needs.append((label, "val"))
            if with_test and count >= 3:
                needs.append((label, "test"))
            needs.append((label, "train"))
    return needs


def _search(
    needs: list[tuple[str, str]],
    members: dict[str, list[int]],
    labels: dict[int, frozenset[str]],
    budget: int,
    backtrack: bool,
) -> dict[int, str] | None:
    """Assign units so each (class, split) need has one; None when none exists or the budget runs out.

    Without ``backtrack`` this is one greedy pass that skips needs it cannot meet.
    """
    assigned: dict[int, str] = {}
    covered: Counter[tuple[str, str]] = Counter()
    frames: list[list] = []  # per need: [next candidate position, unit chosen for it or None]
    i = 0
    while 0 <= i < len(needs):
        budget -= 1
        if budget < 0:
            return None
        label, split = needs[i]
        candidates = members[label]
        if len(frames) == i:  # arriving at this need, not backtracking into it
            covered_already = covered[label, split] > 0
            frames.append([len(candidates) if covered_already else 0, None])
            if covered_already:
                i += 1
                continue
        frame = frames[i]
        if frame[1] is not None:
            covered.subtract((other, split) for other in labels[frame[1]])
            del assigned[frame[1]]
            frame[1] = None
        while frame[0] < len(candidates) and candidates[frame[0]] in assigned:
            frame[0] += 1
        if frame[0] < len(candidates):
            frame[1] = candidates[frame[0]]
            frame[0] += 1
            assigned[frame[1]] = split
            covered.update((other, split) for other in labels[frame[1]])
            i += 1
        elif backtrack:
            frames.pop()
            i -= 1
        else:
            i += 1
    return assigned if i >= 0 else None


def _fill(
    order: list[int],
    assigned: dict[int, str],
    labels: dict[int, frozenset[str]],
    needs: list[tuple[str, str]],
    n_val: int,
    n_test: int,
) -> dict[int, str]:
    """Top val and test up to their sizes, never taking a class's last training unit."""
    result = {unit: assigned.get(unit, "train") for unit in order}
    guarded = {label for label, split in needs if split == "train"}
    in_train = Counter(label for unit in order if result[unit] == "train" for label in labels[unit] & guarded)
    sizes = Counter(result.values())
    missing = {"val": n_val - sizes["val"], "test": n_test - sizes["test"]}
    for unit in order:
        split = "val" if missing["val"] > 0 else "test" if missing["test"] > 0 else None
        if split is None:
            break
        if result[unit] != "train" or any(in_train[label] < 2 for label in labels[unit] & guarded):
            continue
        result[unit] = split
        missing[split] -= 1
        in_train.subtract(labels[unit] & guarded)
    return result


def _split_units(
    pool: Sequence[int], units: list[_Unit], val_ratio: float, test_ratio: float, rng: random.Random
) -> dict[int, str]:
    """Stratified split of the units at the indices in ``pool``."""
    order = sorted(pool)
    rng.shuffle(order)
    labels = {index: units[index].labels for index in order}
    members: dict[str, list[int]] = defaultdict(list)
    for index in order:
        for label in sorted(labels[index]):
            members[label].append(index)
    needs = _requirements(members, with_test=test_ratio > 0)
    assigned = _search(needs, members, labels, _SEARCH_BUDGET, backtrack=True)
    if assigned is None:  # some classes cannot be stratified; do the best single pass
        assigned = _search(needs, members, labels, len(needs) + 1, backtrack=False)
    n_val, n_test = _targets(len(order), val_ratio, test_ratio)
    return _fill(order, assigned, labels, needs, n_val, n_test)


def _split_by_folders(units: list[_Unit], val_ratio: float, test_ratio: float, rng: random.Random) -> dict[int, str]:
    folders = {index: unit.folder for index, unit in enumerate(units) if unit.folder is not None}
    if not folders:
        raise UsageError(
            "no train/valid/test folders were found in the zip; split by ratio instead "
            "(leave out --use-folders), or put the images in train/ and valid/ folders.",
            kind="no_split_folders",
        )
    result = dict(folders)
    if "val" not in folders.values():  # a train folder alone still needs something to validate on
        trained = [index for index, folder in folders.items() if folder == "train"]
        result |= _split_units(trained, units, val_ratio, 0.0, rng)
    free = [index for index in range(len(units)) if index not in folders]
    result |= _split_units(free, units, val_ratio, test_ratio, rng)
    for split, name in (("train", "training"), ("val", "validation")):
        if split not in result.values():
            raise UsageError(
                f"the folders leave no {name} images: put more images in the train/ folder "
                f"(and valid/), or split by ratio instead (leave out --use-folders).",
                kind="empty_split_folder",
                details={"split": split},
            )
    return result


def split_samples(
    samples: Sequence[Sample], val_ratio: float, test_ratio: float = 0.0, seed: int = 0, use_folders: bool = False
) -> dict[int, str]:
    """Sample id -> "train", "val" or "test"; the same inputs in any order give the same split."""
    _check_ratios(val_ratio, test_ratio)
    units = _units(samples)
    if len(units) < 2:
        raise UsageError(
            f"only {len(units)} distinct usable image(s) (identical copies count once); a split "
            "needs at least 2, one to train on and one to validate on: add more images.",
            kind="too_few_images",
            details={"images": len(units)},
        )
    rng = random.Random(seed)
    if use_folders:
        by_unit = _split_by_folders(units, val_ratio, test_ratio, rng)
    else:
        by_unit = _split_units(range(len(units)), units, val_ratio, test_ratio, rng)
    return {sample_id: by_unit[index] for index, unit in enumerate(units) for sample_id in unit.ids}


def split_stats(
    samples: Sequence[Sample], assignment: dict[int, str], label_of: Callable[[str], str | None] = _same
) -> dict[str, SplitStats]:
    """Images, boxes and boxes per final class of every split in use; dropped labels are not counted."""
    images: Counter[str] = Counter()
    classes: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        split = assignment[sample.id]
        images[split] += 1
        classes[split].update(final for box in sample.boxes if (final := label_of(box.label)) is not None)
    return {
        split: SplitStats(
            images=images[split], boxes=sum(classes[split].values()), classes=dict(sorted(classes[split].items()))
        )
        for split in SPLITS
        if images[split]
    }


def split_warnings(
    samples: Sequence[Sample], assignment: dict[int, str], label_of: Callable[[str], str | None] = _same
) -> tuple[ClassWarning, ...]:
    """Classes with too few images in a split, in class order."""
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        finals = {label_of(box.label) for box in sample.boxes} - {None}
        for final in finals:
            per_class[final][assignment[sample.id]] += 1
    with_test = "test" in {assignment[sample.id] for sample in samples}
    warnings: list[ClassWarning] = []
    for name in sorted(per_class):
        warnings.extend(_class_warnings(name, per_class[name], with_test))
    return tuple(warnings)


def _class_warnings(name: str, images: Counter[str], with_test: bool) -> list[ClassWarning]:
    warnings = []
    train, val = images["train"], images["val"]
    if train == 0:
        warnings.append(ClassWarning("no_train", name, "train", 0))
    elif train < _MIN_TRAIN_IMAGES:
        warnings.append(ClassWarning("few_train", name, "train", train))
    if val == 0:
        warnings.append(ClassWarning("no_val", name, "val", 0))
    elif val < _MIN_VAL_IMAGES:
        warnings.append(ClassWarning("few_val", name, "val", val))
    if with_test and images["test"] == 0:
        warnings.append(ClassWarning("no_test", name, "test", 0))
    return warnings
