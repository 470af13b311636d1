"""The English and Korean catalogues (bot/texts) say the same things: the same names, the same parameters,
the same placeholders; the Korean one is Korean; the language of a reply follows the user."""

from __future__ import annotations

import inspect
import re
import string
import types
from collections import Counter
from dataclasses import asdict

import pytest

from bot import texts
from bot.texts import english, ko
from pipeline.data.reports import PROBLEM_KINDS
from pipeline.data.split import _class_warnings
from pipeline.train.catalogue import recommend
from pipeline.train.hardware import Hardware

HANGUL = re.compile(r"[\uac00-\ud7a3]")
ENGLISH = re.compile(r"\b(the|is|a|and|has|no|only|each|here)\b")


def entries(catalogue) -> dict:
    """A catalogue's messages: its functions and its texts (strings, tables, lists), by name."""
    return {
        name: value
        for name, value in vars(catalogue).items()
        if not name.startswith("_") and isinstance(value, (types.FunctionType, str, dict, list, tuple, int))
    }


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def shape(value):
    """What must agree between languages: a function's parameters, a text's placeholders, a table's keys."""
    if isinstance(value, types.FunctionType):
        return ("function", [(p.name, p.kind, p.default) for p in inspect.signature(value).parameters.values()])
    if isinstance(value, str):
        return ("text", fields(value))
    if isinstance(value, dict):
        return ("table", {key: shape(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return ("list", [item[0] if isinstance(item, tuple) else shape(item) for item in value])
    return (type(value).__name__, value)


def differences(first, second) -> list[str]:
    one, other = entries(first), entries(second)
    found = [f"{name}: only in {first.__name__}" for name in sorted(one.keys() - other.keys())]
    found += [f"{name}: only in {second.__name__}" for name in sorted(other.keys() - one.keys())]
    found += [
        f"{name}: {shape(one[name])} != {shape(other[name])}"
        for name in sorted(one.keys() & other.keys())
        if shape(one[name]) != shape(other[name])
    ]
    return found


def test_english_and_korean_have_the_same_messages_parameters_and_placeholders():
    assert differences(english, ko) == []


def test_the_comparison_fails_on_a_missing_message_a_parameter_or_a_placeholder():
    def greet(name):
        return name

    def greet_twice(name, times):
        return name * times

    en = types.ModuleType("en")
    en.__dict__.update(HELLO="Hello {name}", BYE="Bye", greet=greet, TABLE={"a": "{x}"})
    other = types.ModuleType("other")
    other.__dict__.update(HELLO="안녕하세요 {who}", greet=greet_twice, TABLE={"a": "{x}"}, EXTRA="더")
    assert differences(en, other) == [
        "BYE: only in en",
        "EXTRA: only in other",
        f"HELLO: {('text', {'name'})} != {('text', {'who'})}",
        f"greet: {shape(greet)} != {shape(greet_twice)}",
    ]


def test_every_korean_text_is_korean():
    shared = {name for name, value in entries(ko).items() if entries(english).get(name) is value}
    for name, value in entries(ko).items():
        if name in shared or not isinstance(value, (str, dict)):
            continue
        for text in value.values() if isinstance(value, dict) else [value]:
            assert HANGUL.search(text), f"{name}: {text!r}"
    assert shared <= {"ARCHIVE_KINDS", "CLASSES_IN_CHAT", "CLASSES_ON_CARD", "DETAIL_IN_CHAT", "WARNINGS_IN_CHAT"} | {
        "size_text",
        "report_file",
        "split_file",
        "ap_file",
    }


@pytest.mark.parametrize(
    ("telegram", "language"),
    [("ko", "ko"), ("ko-KR", "ko"), ("KO_kr", "ko"), ("en", "en"), ("de", "en"), ("kok", "en"), (None, "en")],
)
def test_the_language_of_a_telegram_app(telegram, language):
    assert texts.language_of(telegram) == language


def test_a_stored_choice_wins_over_the_app_and_speaking_is_scoped():
    assert texts.choose("en", "ko-KR") == "en" and texts.choose(None, "ko-KR") == "ko"
    assert texts.choose("xx", None) == "en"
    assert texts.spoken() == "en" and "Pascal VOC" in texts.HELP
    with texts.speaking("ko"):
        assert HANGUL.search(texts.HELP) and HANGUL.search(texts.report_file("x") + texts.checking("a.zip"))
    assert texts.spoken() == "en"


# --- what the pipeline reports as kinds and parameters, worded in Korean ---------------------------------


def test_recommendations_and_devices_are_worded_from_their_parameters():
    machines = [
        Hardware(cpu_cores=4),
        Hardware(gpus=1, gpu_memory_mb=4096, cpu_cores=8),
        Hardware(gpus=2, gpu_memory_mb=16384, cpu_cores=8),
        Hardware(gpus=1, gpu_memory_mb=16384, cpu_cores=8, assumed=True),
    ]
    seen = set()
    for machine in machines:
        assert (
            HANGUL.search(ko.device(machine.device_params)) and english.device(machine.device_params) == machine.device
        )
        for images in (50, 5000):
            choice = recommend(images, machine)
            seen.add(choice.kind)
            worded = ko.recommendation(choice.kind, choice.params)
            assert HANGUL.search(worded) and not ENGLISH.search(worded), choice
            assert english.recommendation(choice.kind, choice.params) == choice.reason
    assert seen == set(english.RECOMMENDATIONS) == set(ko.RECOMMENDATIONS)
    accurate = recommend(5000, machines[2])
    assert "GPU 2개(각 16 GB)" in ko.recommendation(accurate.kind, accurate.params)


@pytest.mark.parametrize(
    "counts", [{"train": 0, "val": 0, "test": 0}, {"train": 1, "val": 1, "test": 0}, {"train": 3, "val": 1}]
)
def test_split_warnings_are_worded_from_their_kind_and_parameters(counts):
    warnings = _class_warnings("원", Counter(counts), with_test=True)
    assert warnings
    for warning in warnings:
        worded = ko.class_warning(asdict(warning))
        assert HANGUL.search(worded) and "class" not in worded and "'원'" in worded, warning
        assert f"'{warning.name}'" in english.class_warning(asdict(warning))


def test_every_problem_kind_is_worded_in_both_languages():
    assert set(english.WORDED_PROBLEMS) == set(PROBLEM_KINDS) == set(ko.WORDED_PROBLEMS)
    problem = {
        "kind": "image_without_annotation",
        "file": "사진/01.jpg",
        "detail": "x has no XML",
        "action": "left out",
        "params": {},
    }
    with texts.speaking("ko"):
        chat = texts.problems([problem] * 5)
    assert "주석 없는 이미지 x5" in chat and "사진/01.jpg" in chat and "... 외 2개" in chat
    assert "left out" not in chat and "has no" not in chat
