"""Extraction of uploaded dataset zips: real archives built in tmp_path, no mocks."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from pipeline.data.ingest import IMAGE_EXTENSIONS, Extraction, ExtractLimits, extract_zip
from pipeline.errors import DatasetRejected
from tests.builders import image_bytes, write_zip, zip_bytes

KANGAROO = Path("/work/shared/datasets/kangaroo.zip")


JPEG = image_bytes((8, 8))
XML = b"<annotation><filename>a.jpg</filename></annotation>"


class RawName(zipfile.ZipInfo):
    """Stores its name as the given bytes, without the UTF-8 flag, like old Windows zip tools.

    ``writestr`` resets ``flag_bits`` to 0, so extra flags (e.g. encryption) must
    be added here, where both the local and the central header take them from.
    """

    def __init__(self, raw: bytes, extra_flags: int = 0):
        super().__init__(raw.decode("cp437"))
        self.raw = raw
        self.extra_flags = extra_flags

    def _encodeFilenameFlags(self):
        return self.raw, self.flag_bits | self.extra_flags


def images(*names: str) -> list[tuple[str, bytes]]:
    return [(name, JPEG) for name in names]


def patch_headers(path: Path, *, local: dict[int, tuple[str, int]], central: dict[int, tuple[str, int]]) -> None:
    """Overwrite fields of the (single) local and central header: {offset: (struct format, value)}."""
    data = bytearray(path.read_bytes())
    for signature, fields in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = data.index(signature)
        for offset, (fmt, value) in fields.items():
            struct.pack_into(fmt, data, start + offset, value)
    path.write_bytes(bytes(data))


def lie_about_size(path: Path, size: int) -> None:
    patch_headers(path, local={22: ("<I", size)}, central={24: ("<I", size)})


def files_on_disk(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    return tmp_path / "upload.zip"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "dataset"


def extract_ok(upload: Path, dest: Path, entries, **kwargs) -> Extraction:
    write_zip(upload, entries)
    result = extract_zip(upload, dest, **kwargs)
    assert result.root == dest
    assert list(result.files) == files_on_disk(dest)
    assert not dest.with_name(dest.name + ".partial").exists()
    return result


# --- refusals ---------------------------------------------------------------------------------


def build_bad_crc(path: Path) -> None:
    write_zip(path, images("images/a.jpg"), zipfile.ZIP_STORED)
    patch_headers(path, local={14: ("<I", 0)}, central={16: ("<I", 0)})


def build_lying_small(path: Path) -> None:
    write_zip(path, [("images/zeros.jpg", bytes(2 * 2**20))])
    lie_about_size(path, 1000)


def build_lying_huge(path: Path) -> None:
    write_zip(path, [("images/zeros.jpg", bytes(4 * 2**20))])
    lie_about_size(path, 0xFFFF_FFF0)


def build_deflate64(path: Path) -> None:
    write_zip(path, images("images/a.jpg"))
    patch_headers(path, local={8: ("<H", 9)}, central={10: ("<H", 9)})


def build_truncated(path: Path) -> None:
    data = zip_bytes(images("images/a.jpg", "images/b.jpg"))
    path.write_bytes(data[: len(data) // 2])


def build_symlink(path: Path) -> None:
    link = zipfile.ZipInfo("images/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    write_zip(path, images("images/a.jpg") + [(link, "/etc/passwd")])


def nested(name: str, entries) -> tuple[str, bytes]:
    return (name, zip_bytes(entries))


LONG = "x" * 300 + ".jpg"
ZEROS_20M = bytes(20 * 2**20)

REFUSALS = [
    pytest.param(
        lambda p: p.write_bytes(b"just some text"),
        None,
        "not_a_zip",
        ["upload.zip is not a zip file", ".zip archive"],
        id="not-a-zip",
    ),
    pytest.param(
        lambda p: p.write_bytes(b"Rar!\x1a\x07\x00" + bytes(64)), None, "not_a_zip", ["upload.zip", "RAR"], id="rar"
    ),
    pytest.param(build_truncated, None, "corrupt_zip", ["upload.zip", "cut short"], id="truncated"),
    pytest.param(build_bad_crc, None, "corrupt_zip", ["upload.zip > images/a.jpg", "CRC"], id="bad-crc"),
    pytest.param(build_lying_small, None, "corrupt_zip", ["upload.zip > images/zeros.jpg"], id="size-lies-small"),
    pytest.param(
        build_lying_huge, None, "too_large", ["upload.zip > images/zeros.jpg", "one file"], id="size-lies-huge"
    ),
    pytest.param(
        build_lying_huge,
        ExtractLimits(max_entry_bytes=2**33, max_total_bytes=2**33),
        "compression_ratio",
        ["upload.zip > images/zeros.jpg", "zip bomb"],
        id="size-lies-streamed",
    ),
    pytest.param(
        build_deflate64, None, "unsupported_compression", ["upload.zip > images/a.jpg", "Deflate"], id="deflate64"
    ),
    pytest.param(lambda p: write_zip(p, []), None, "empty_zip", ["upload.zip", "no files"], id="no-entries"),
    pytest.param(
        lambda p: write_zip(p, [("__MACOSX/._a.jpg", b"x"), (".DS_Store", b"x"), ("x/Thumbs.db", b"x")]),
        None,
        "empty_zip",
        ["upload.zip", "__MACOSX"],
        id="only-junk",
    ),
    pytest.param(
        lambda p: write_zip(p, [("images/", b""), ("annotations/", b"")]),
        None,
        "empty_zip",
        ["upload.zip"],
        id="only-folders",
    ),
    pytest.param(
        lambda p: write_zip(p, [("notes.txt", b"hi"), ("annotations/a.xml", XML)]),
        None,
        "no_images",
        ["upload.zip", "notes.txt", ".jpg", ".jpeg", ".png"],
        id="no-images",
    ),
    pytest.param(
        lambda p: write_zip(p, images("a.jpg", "../evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > ../evil.jpg", "'..'"],
        id="dotdot",
    ),
    pytest.param(
        lambda p: write_zip(p, images("images/../../evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > images/../../evil.jpg"],
        id="dotdot-inner",
    ),
    pytest.param(
        lambda p: write_zip(p, images("/etc/evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > /etc/evil.jpg", "absolute"],
        id="absolute",
    ),
    pytest.param(
        lambda p: write_zip(p, images("C:\\Windows\\evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > C:\\Windows\\evil.jpg", "drive"],
        id="drive",
    ),
    pytest.param(
        lambda p: write_zip(p, images("C:evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > C:evil.jpg", "drive"],
        id="drive-relative",
    ),
    pytest.param(
        lambda p: write_zip(p, images("\\\\server\\share\\evil.jpg")),
        None,
        "unsafe_path",
        ["upload.zip > \\\\server\\share\\evil.jpg", "network share"],
        id="unc",
    ),
    pytest.param(
        lambda p: write_zip(p, [(RawName(b"images/evil\x00.jpg"), JPEG)]),
        None,
        "unsafe_path",
        ["upload.zip > images/evil\\x00.jpg", "NUL"],
        id="nul-byte",
    ),
    pytest.param(lambda p: write_zip(p, images(LONG)), None, "unsafe_path", [LONG, "255"], id="name-too-long"),
    pytest.param(build_symlink, None, "symlink", ["upload.zip > images/link.jpg", "symbolic link"], id="symlink"),
    pytest.param(
        lambda p: write_zip(p, [(RawName(b"images/a.jpg", extra_flags=0x1), JPEG)]),
        None,
        "encrypted",
        ["upload.zip > images/a.jpg", "without a password"],
        id="encrypted",
    ),
    pytest.param(
        lambda p: write_zip(p, images("a.jpg", "b.jpg", "c.jpg", "d.jpg")),
        ExtractLimits(max_entries=3),
        "too_many_entries",
        ["upload.zip", "past 3 entries"],
        id="too-many-entries",
    ),
    pytest.param(
        lambda p: write_zip(p, [("a.jpg", bytes(600)), ("b.jpg", bytes(600))]),
        ExtractLimits(max_total_bytes=1000),
        "too_large",
        ["upload.zip", "a.jpg"],
        id="too-large-total",
    ),
    pytest.param(
        lambda p: write_zip(p, images("a.jpg") + [("big.jpg", bytes(6000))]),
        ExtractLimits(max_entry_bytes=5000),
        "too_large",
        ["upload.zip > big.jpg"],
        id="too-large-entry",
    ),
    pytest.param(
        lambda p: write_zip(p, images("images/a.jpg") + [("images/bomb.jpg", ZEROS_20M)]),
        None,
        "compression_ratio",
        ["upload.zip > images/bomb.jpg", "zip bomb"],
        id="ratio-bomb",
    ),
    pytest.param(
        lambda p: write_zip(p, [nested("data/inner.zip", [nested("deeper.zip", images("a.jpg"))])]),
        None,
        "nested_too_deep",
        ["upload.zip > data/inner.zip > deeper.zip", "Unpack it"],
        id="nested-too-deep",
    ),
    pytest.param(
        lambda p: write_zip(p, [nested("inner.zip", images("a.jpg"))]),
        ExtractLimits(max_nesting=0),
        "nested_too_deep",
        ["upload.zip > inner.zip"],
        id="nesting-disabled",
    ),
    pytest.param(
        lambda p: write_zip(p, images("a.jpg") + [nested("inner.zip", images("b.jpg", "../evil.jpg"))]),
        None,
        "unsafe_path",
        ["upload.zip > inner.zip > ../evil.jpg"],
        id="nested-unsafe",
    ),
    pytest.param(
        lambda p: write_zip(p, [nested("inner.zip", images("a.jpg", "b.jpg", "c.jpg"))]),
        ExtractLimits(max_entries=3),
        "too_many_entries",
        ["upload.zip > inner.zip"],
        id="nested-shares-entry-budget",
    ),
    pytest.param(
        lambda p: write_zip(p, [nested("inner.zip", [("bomb.bin", ZEROS_20M)])]),
        None,
        "compression_ratio",
        ["upload.zip > inner.zip > bomb.bin"],
        id="nested-bomb",
    ),
    pytest.param(
        lambda p: write_zip(p, images("a.jpg") + [("fake.zip", b"not really a zip")]),
        None,
        "not_a_zip",
        ["upload.zip > fake.zip is not a zip file"],
        id="nested-not-a-zip",
    ),
]


@pytest.mark.parametrize("build, limits, kind, fragments", REFUSALS)
def test_refusals(tmp_path, upload, dest, build, limits, kind, fragments):
    build(upload)
    with pytest.raises(DatasetRejected) as caught:
        extract_zip(upload, dest, limits or ExtractLimits())
    message = str(caught.value)
    assert caught.value.kind == kind, message
    for fragment in fragments:
        assert fragment in message
    assert "send" in message.lower()  # every refusal tells the sender what to do
    assert "\n" not in message
    leftovers = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert leftovers == ["upload.zip", "ws"]


def test_destination_with_files_is_refused_and_left_alone(upload, dest):
    write_zip(upload, images("a.jpg"))
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DatasetRejected) as caught:
        extract_zip(upload, dest)
    assert caught.value.kind == "destination_not_empty"
    assert files_on_disk(dest) == ["keep.txt"]
    assert not dest.with_name("dataset.partial").exists()


def test_destination_may_be_an_empty_folder(upload, dest):
    dest.mkdir(parents=True)
    assert extract_ok(upload, dest, images("a.jpg")).files == ("a.jpg",)


def test_stale_partial_folder_is_replaced(upload, dest):
    stale = dest.with_name("dataset.partial")
    stale.mkdir(parents=True)
    (stale / "old.jpg").write_bytes(JPEG)
    assert extract_ok(upload, dest, images("new.jpg")).files == ("new.jpg",)


# --- accepted layouts -------------------------------------------------------------------------

LAYOUTS = {
    "one-root-folder": ["kangaroo/images/a.jpg", "kangaroo/annots/a.xml"],
    "several-roots": ["cats/a.jpg", "cats/a.xml", "dogs/b.png", "dogs/b.xml"],
    "images-annotations": ["images/a.jpg", "images/b.JPEG", "annotations/a.xml", "annotations/b.xml"],
    "voc": ["VOC/JPEGImages/a.jpg", "VOC/Annotations/a.xml", "VOC/ImageSets/Main/train.txt"],
    "pre-split": ["train/a.jpg", "train/a.xml", "valid/b.jpg", "valid/b.xml", "test/c.jpg", "test/c.xml"],
    "non-ascii": ["my photos/IMG (1).jpg", "사진/고양이 1.jpg", "café/naïve.png", "写真/猫.jpeg"],
}


@pytest.mark.parametrize("names", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_layouts(upload, dest, names):
    entries = [(name, JPEG if name.lower().endswith(IMAGE_EXTENSIONS) else XML) for name in names]
    result = extract_ok(upload, dest, entries)
    assert result.files == tuple(sorted(names))
    assert result.skipped == () and result.nested == ()
    assert (dest / names[0]).read_bytes() == entries[0][1]


def test_os_junk_is_skipped(upload, dest):
    junk = [
        "__MACOSX/",
        "__MACOSX/images/._a.jpg",
        "images/.DS_Store",
        "images/Thumbs.db",
        "desktop.ini",
        "images/._b.jpg",
    ]
    result = extract_ok(upload, dest, images("images/a.jpg") + [(name, b"junk") for name in junk])
    assert result.files == ("images/a.jpg",)
    assert sorted(result.skipped) == sorted(junk)


def test_windows_separators_and_dot_segments_are_normalised(upload, dest):
    result = extract_ok(upload, dest, images("data\\images\\a.jpg", "./data/images/b.jpg", "data//c.jpg"))
    assert result.files == ("data/c.jpg", "data/images/a.jpg", "data/images/b.jpg")


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param("고양이 (1).jpg".encode("cp949"), "고양이 (1).jpg", id="cp949"),
        pytest.param("ｶﾒﾗ.jpg".encode("cp932"), "ｶﾒﾗ.jpg", id="cp932"),
        pytest.param("café.jpg".encode("cp437"), "café.jpg", id="cp437"),
        pytest.param("naïve.jpg".encode(), "naïve.jpg", id="utf8-without-flag"),
    ],
)
def test_legacy_name_encodings(upload, dest, raw, expected):
    result = extract_ok(upload, dest, [(RawName(raw), JPEG)])
    assert result.files == (expected,)


def test_info_zip_unicode_path_field_wins(upload, dest):
    raw = b"GARBLED.JPG"
    info = RawName(raw)
    info.extra = struct.pack("<HHBI", 0x7075, 5 + len("사진.jpg".encode()), 1, zlib.crc32(raw)) + "사진.jpg".encode()
    stale = RawName(b"OTHER.JPG")  # field no longer matches the stored name: ignored
    stale.extra = struct.pack("<HHBI", 0x7075, 5 + 5, 1, zlib.crc32(b"old")) + b"x.jpg"
    assert extract_ok(upload, dest, [(info, JPEG), (stale, JPEG)]).files == ("OTHER.JPG", "사진.jpg")


def test_duplicates_keep_the_first(upload, dest):
    entries = [
        ("images/a.jpg", JPEG),
        ("images/a.jpg", b"second"),
        ("images\\a.jpg", b"third"),
        ("./images/a.jpg", b"fourth"),
        ("b", b"a file"),
        ("b/c.jpg", JPEG),
    ]
    result = extract_ok(upload, dest, entries)
    assert result.files == ("b", "images/a.jpg")
    assert result.skipped == ("images/a.jpg", "images/a.jpg", "images/a.jpg", "b/c.jpg")
    assert (dest / "images/a.jpg").read_bytes() == JPEG


def test_directory_entries_create_folders(upload, dest):
    result = extract_ok(upload, dest, [("images/", b""), ("empty/", b"")] + images("images/a.jpg"))
    assert result.files == ("images/a.jpg",)
    assert (dest / "empty").is_dir()


def test_zip_inside_zip_is_unpacked_next_to_itself(upload, dest):
    inner = [("images/a.jpg", JPEG), ("annotations/a.xml", XML), ("__MACOSX/._a.jpg", b"junk")]
    result = extract_ok(upload, dest, images("top.jpg") + [nested("data/Part 1.ZIP", inner)])
    assert result.nested == ("data/Part 1.ZIP",)
    assert result.files == ("data/Part 1/annotations/a.xml", "data/Part 1/images/a.jpg", "top.jpg")
    assert result.skipped == ("data/Part 1/__MACOSX/._a.jpg",)
    assert sorted(p.name for p in dest.iterdir()) == ["data", "top.jpg"]  # no spool file left


@pytest.mark.skipif(not KANGAROO.exists(), reason="kangaroo.zip not available")
def test_kangaroo_dataset(tmp_path):
    result = extract_zip(KANGAROO, tmp_path / "kangaroo")
    assert sum(name.endswith(".jpg") for name in result.files) == 164
    assert sum(name.endswith(".xml") for name in result.files) == 164
