"""Label maps: writing, tolerant reading with line-numbered errors, class edits, coverage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.class_edits import LabelEdits, drop, merge, parse_merge, parse_rename, rename
from pipeline.errors import LabelMapError, UsageError
from pipeline.label_map import (
    LabelItem,
    LabelMap,
    check_coverage,
    derive,
    parse_pbtxt,
    read_pbtxt,
    to_pbtxt,
    write_pbtxt,
)


def test_derive_sorts_distinct_labels_and_numbers_them_from_one():
    label_map = derive(["dog", "cat", "dog", "Zebra"])
    assert label_map.items == (LabelItem(1, "Zebra", "Zebra"), LabelItem(2, "cat", "cat"), LabelItem(3, "dog", "dog"))
    assert label_map.ids() == {"Zebra": 1, "cat": 2, "dog": 3}
    assert derive([]).items == ()


def test_to_pbtxt_writes_the_od_api_layout():
    assert to_pbtxt(derive(["dog", "cat"])) == (
        "item {\n  id: 1\n  name: 'cat'\n  display_name: 'cat'\n}\n"
        "item {\n  id: 2\n  name: 'dog'\n  display_name: 'dog'\n}\n"
    )


def test_to_pbtxt_escapes_quotes_backslashes_and_line_breaks():
    text = to_pbtxt(LabelMap((LabelItem(1, 'it\'s a \\ "b"\n', "x"),)))
    assert "name: 'it\\'s a \\\\ \"b\"\\n'" in text
    assert parse_pbtxt(text, "m.pbtxt").items[0].name == 'it\'s a \\ "b"\n'


names = st.text(min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(names, names), min_size=1, max_size=8, unique_by=lambda pair: pair[0]),
    st.randoms(use_true_random=False),
)
def test_round_trip_of_any_names(pairs, rng):
    ids = rng.sample(range(1, 1000), len(pairs))
    label_map = LabelMap(tuple(LabelItem(i, name, display) for i, (name, display) in zip(ids, pairs)))
    assert parse_pbtxt(to_pbtxt(label_map), "m.pbtxt") == label_map


@settings(max_examples=50, deadline=None)
@given(st.lists(names, min_size=1, max_size=8))
def test_round_trip_of_derived_maps(labels):
    label_map = derive(labels)
    assert parse_pbtxt(to_pbtxt(label_map), "m.pbtxt") == label_map


MSCOCO_STYLE = """\
# Label map of the COCO-trained models; ids follow the original category ids.
item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
  keypoints {
    id: 0
    label: "nose"
  }
  keypoints { id: 1 label: "left_eye" }
}
item {
  name: "/m/0199g"  # inline comment
  id: 2
  display_name: "bicycle"
  frequency: FREQUENT
  instance_count: 3252
  ancestor_ids: [7, 8]
}
"""


def test_reads_an_od_api_map_with_comments_double_quotes_and_extra_fields():
    label_map = parse_pbtxt(MSCOCO_STYLE, "mscoco_label_map.pbtxt")
    assert label_map.items == (LabelItem(1, "/m/01g317", "person"), LabelItem(2, "/m/0199g", "bicycle"))
    assert label_map.lookup("person").id == 1  # found by display name
    assert label_map.lookup("/m/0199g").id == 2
    assert label_map.lookup("Person") is None


def test_reads_display_name_only_compact_and_angle_bracket_items():
    text = (
        "item { id: 1 display_name: 'RBC' } item: { id: 2, name: 'WBC'; }\n"
        "item < id: 3 name: 'class #3' > item { id: 0x4 name: 'caf' \"\\303\\251\" }"
    )
    label_map = parse_pbtxt(text, "cells.pbtxt")
    assert label_map.items == (
        LabelItem(1, "RBC", "RBC"),
        LabelItem(2, "WBC", "WBC"),
        LabelItem(3, "class #3", "class #3"),
        LabelItem(4, "café", "café"),
    )


def test_name_match_wins_over_a_display_name():
    label_map = LabelMap((LabelItem(1, "a", "b"), LabelItem(2, "b", "c")))
    assert label_map.lookup("b").id == 2
    assert label_map.lookup("c").id == 2
    assert label_map.lookup("z") is None


def test_read_handles_bom_and_windows_line_endings(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_bytes("\ufeffitem {\r\n  id: 1\r\n  name: 'dog'\r\n}\r\nitem {\r\n  id: 1\r\n".encode())
    with pytest.raises(LabelMapError, match=r"label_map\.pbtxt, line 6: the file ends"):
        read_pbtxt(path)
    path.write_bytes("\ufeffitem {\r\n  id: 1\r\n  name: 'dog'\r\n}\r\n".encode())
    assert read_pbtxt(path) == derive(["dog"])


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("", 1, "label map is empty"),
        ("# only a comment\n\n", 1, "label map is empty"),
        ("item {\n  name: 'dog'\n}\n", 1, "has no id"),
        ("item {\n  name: 'bg'\n  id: 0\n}\n", 3, "0 is reserved for the background"),
        ("item {\n  id: -2\n  name: 'x'\n}\n", 2, "below 1"),
        (
            "item { id: 1 name: 'a' }\nitem {\n  id: 1\n  name: 'b'\n}\n",
            3,
            "id 1 is used twice (also by the item on line 1)",
        ),
        ("item { id: 1 name: 'a' }\n\nitem { id: 2 name: 'a' }\n", 3, "name 'a' is used twice"),
        ("item {\n  id: 1\n  name: 'dog\n}\n", 3, "is not closed"),
        ("item {\n  id: 1\n  name: 'dog'\n\n", 3, "the file ends where"),
        ("item {\n  id 1\n}\n", 2, "expected ':' after id"),
        ("item {\n  id: 1\n  name: dog\n}\n", 3, "not in quotes"),
        ("item {\n  id: '1'\n  name: 'dog'\n}\n", 2, "not a whole number"),
        ("item {\n  id: 1\n  name: 'a'\n  name: 'b'\n}\n", 4, "second name (the first is on line 3)"),
        ("item {\n  id: 1\n}\n", 1, "has no name"),
        ("item {\n  id: 1\n  name: ''\n}\n", 3, "name is empty"),
        ("item {\n  id: 1\n  name: 'a\\qb'\n}\n", 3, "escape"),
        ("item { id: 1 name: 'a' }\n}\n", 2, "expected a field name"),
        ("item {\n  id: 1 name: 'a'\n  extra { x: [1, 2}\n}\n", 3, "expected ] to close the [ on line 3"),
        ("item {\n  id: 1 name: 'a' @\n}\n", 2, "unexpected character '@'"),
    ],
)
def test_errors_name_the_file_the_line_and_the_fix(text, line, fragment):
    with pytest.raises(LabelMapError) as caught:
        parse_pbtxt(text, "my_map.pbtxt")
    message = str(caught.value)
    assert message.startswith(f"my_map.pbtxt, line {line}: ")
    assert fragment in message
    assert caught.value.details == {"file": "my_map.pbtxt", "line": line}
    assert len(message.split(". ")) >= 2  # a second sentence says what to do


def test_write_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "data" / "label_map.pbtxt"
    write_pbtxt(derive(["a", "b"]), path)
    write_pbtxt(derive(["c"]), path)
    assert read_pbtxt(path) == derive(["c"])
    assert [p.name for p in path.parent.iterdir()] == ["label_map.pbtxt"]


def test_read_reports_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(LabelMapError, match="does not exist"):
        read_pbtxt(tmp_path / "nope.pbtxt")
    path = tmp_path / "latin1.pbtxt"
    path.write_bytes("item { id: 1 name: 'caf\xe9' }".encode("latin-1"))
    with pytest.raises(LabelMapError, match="latin1.pbtxt is not UTF-8"):
        read_pbtxt(path)


# ---------------------------------------------------------------- edits


def known_after(edits, raw):
    return {final for label in raw if (final := edits.apply(label)) is not None}


def test_edits_compose_rename_then_merge():
    raw = {"a", "b", "c", "e"}
    edits = rename(LabelEdits(), known_after(LabelEdits(), raw), "a", "b")
    assert known_after(edits, raw) == {"b", "c", "e"}
    edits = merge(edits, known_after(edits, raw), ["b", "c"], "d")
    assert {label: edits.apply(label) for label in sorted(raw)} == {"a": "d", "b": "d", "c": "d", "e": "e"}
    edits = drop(edits, known_after(edits, raw), "d")
    assert {label: edits.apply(label) for label in sorted(raw)} == {"a": None, "b": None, "c": None, "e": "e"}
    assert edits.apply("never seen") == "never seen"


def test_rename_onto_an_existing_class_merges_and_rename_back_is_clean():
    edits = rename(LabelEdits(), {"wbc", "WBC"}, "wbc", "WBC")
    assert edits.mapping == {"wbc": "WBC"}
    edits = rename(edits, {"WBC"}, "WBC", "wbc")
    assert edits.mapping == {"WBC": "wbc"}  # raw wbc maps to itself again, so it has no entry


def test_edits_do_not_share_the_callers_dict():
    mapping = {"a": "b"}
    edits = LabelEdits(mapping)
    mapping["a"] = "c"
    assert edits.apply("a") == "b"


def test_unknown_class_lists_the_known_ones_and_the_command():
    with pytest.raises(UsageError) as caught:
        rename(LabelEdits(), {"dog", "Cat", "bird"}, "cat", "feline")
    message = str(caught.value)
    assert "there is no class 'cat'" in message
    assert "'Cat', 'bird', 'dog'" in message
    assert "labels --rename OLD=NEW" in message
    with pytest.raises(UsageError, match=r"no class 'x', 'y'.*labels --merge A,B=NEW"):
        merge(LabelEdits(), {"a"}, ["a", "x", "y"], "b")
    with pytest.raises(UsageError, match="labels --drop NAME"):
        drop(LabelEdits({"a": None}), {"b"}, "a")  # already dropped


@pytest.mark.parametrize("bad", ["", "   ", "two\nlines", "tab\there", "''", '"', "' '", " padded"])
def test_bad_new_names_are_refused(bad):
    with pytest.raises(UsageError, match="new class name"):
        rename(LabelEdits(), {"a"}, "a", bad)
    with pytest.raises(UsageError, match="new class name"):
        merge(LabelEdits(), {"a", "b"}, ["a", "b"], bad)


def test_parse_rename_and_merge():
    assert parse_rename(" wbc = WBC ") == ("wbc", "WBC")
    assert parse_rename("red cell=RBC") == ("red cell", "RBC")
    assert parse_merge("a, b ,c=d") == (["a", "b", "c"], "d")
    assert parse_merge("a=b") == (["a"], "b")
    for bad in ["ab", "=b", "a=", "a=b=c"]:
        with pytest.raises(UsageError, match="OLD=NEW"):
            parse_rename(bad)
    for bad in ["ab", "a,,b=c", ",a=c", "a,b=", "a,b=c=d"]:
        with pytest.raises(UsageError, match="A,B=NEW"):
            parse_merge(bad)


RAW = ["a", "b", "c", "d", "e"]
edit_steps = st.lists(
    st.tuples(
        st.sampled_from(["rename", "merge", "drop"]),
        st.lists(st.sampled_from(RAW + ["x", "y"]), min_size=1, max_size=3),
        st.sampled_from(RAW + ["x", "y", "z"]),
    ),
    max_size=8,
)


def apply_edit(edits, known, kind, sources, target):
    if kind == "drop":
        return drop(edits, known, sources[0])
    if kind == "rename":
        return rename(edits, known, sources[0], target)
    return merge(edits, known, sources, target)


@settings(max_examples=200, deadline=None)
@given(edit_steps)
def test_edits_match_a_model_of_class_groups(steps):
    groups = {label: {label} for label in RAW}  # current class -> raw labels in it
    edits = LabelEdits()
    for kind, names, target in steps:
        known = known_after(edits, RAW)
        assert known == set(groups)
        sources = names if kind == "merge" else names[:1]
        if any(name not in known for name in sources):
            with pytest.raises(UsageError):
                apply_edit(edits, known, kind, sources, target)
            continue
        edits = apply_edit(edits, known, kind, sources, target)
        if kind == "drop":
            del groups[sources[0]]
            continue
        moved = set().union(*(groups.pop(name) for name in set(sources)))
        groups[target] = groups.get(target, set()) | moved
    final = {raw: name for name, members in groups.items() for raw in members}
    assert {raw: edits.apply(raw) for raw in RAW} == {raw: final.get(raw) for raw in RAW}
    assert all(raw != final for raw, final in edits.mapping.items())  # no no-op entries pile up


# ---------------------------------------------------------------- coverage


def test_check_coverage_passes_when_names_or_display_names_match():
    label_map = LabelMap((LabelItem(1, "/m/01g317", "person"), LabelItem(2, "dog", "dog")))
    check_coverage(label_map, {"person": ["a.xml"], "dog": ["b.xml"]}, "map.pbtxt")


def test_check_coverage_lists_every_missing_label_with_its_files():
    label_map = LabelMap((LabelItem(1, "dog", "dog"),))
    usage = {"dog": ["d.xml"], "cat": [f"cat{i}.xml" for i in range(8)], "bird": ["b.xml", "b.xml", "c.xml"]}
    with pytest.raises(LabelMapError) as caught:
        check_coverage(label_map, usage, "my_map.pbtxt")
    message = str(caught.value)
    assert message.startswith("2 labels used in the data are missing from the label map my_map.pbtxt:")
    assert "'bird' in b.xml, c.xml\n" in message
    assert "'cat' in cat0.xml, cat1.xml, cat2.xml, cat3.xml, cat4.xml and 3 more" in message
    assert "cat5.xml" not in message and "'dog'" not in message
    assert "Add an item for each to my_map.pbtxt" in message
    assert "--ignore-unknown-labels" in message
    assert caught.value.details == {"missing": {"bird": ["b.xml", "b.xml", "c.xml"], "cat": usage["cat"]}}
    assert caught.value.kind == "label_map_error"


def test_check_coverage_singular_message():
    expected = r"^1 label in the data is missing from the label map m\.pbtxt:\n  'x' in a\.xml\n"
    with pytest.raises(LabelMapError, match=expected):
        check_coverage(derive(["y"]), {"x": ["a.xml"]}, "m.pbtxt")
