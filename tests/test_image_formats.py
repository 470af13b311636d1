"""Only JPEG and PNG are decoded, each within a pixel budget read from its header, and a
dataset within a budget of total pixels: anything else is a bad_image naming its real format."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from pipeline.data.dataset_health import inspect_files
from pipeline.data.images import ImageCheckError, PixelBudget, check_image
from pipeline.data.pair_check import check_dataset_pixels
from pipeline.data.steps import prepare
from pipeline.errors import DatasetRejected
from tests.builders import image_bytes, write_zip, xml

ROOT = Path(__file__).resolve().parents[1]
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n"
    b"newpath 0 0 moveto 64 0 lineto 64 48 lineto closepath fill\nshowpage\n%%EOF\n"
)


def png_header(width: int, height: int, mode_bits: bytes = b"\x08\x02") -> bytes:
    """A PNG that is only a signature, an IHDR chunk and IEND: its size says everything, its pixels nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">II", width, height) + mode_bits + b"\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def inspect_one(tmp_path: Path, name: str, data: bytes):
    source = tmp_path / "src"
    source.mkdir()
    (source / name).write_bytes(data)
    (source / "a.xml").write_bytes(xml(name, (64, 48), [("cat", 5, 5, 30, 30)]))
    return inspect_files(source, (name, "a.xml"), workers=1)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "BMP", "GIF", "WEBP"])
def test_a_foreign_format_named_jpg_is_a_bad_image_that_names_it(tmp_path, fmt):
    samples, report = inspect_one(tmp_path, "a.jpg", image_bytes((64, 48), fmt=fmt))
    assert samples == []
    (problem,) = report.problems
    assert problem.kind == "bad_image" and problem.file == "a.jpg"
    assert f"a.jpg is {fmt} data named .jpg" in problem.detail and "only JPEG and PNG" in problem.detail


def test_a_png_named_jpg_is_still_used(tmp_path):
    samples, report = inspect_one(tmp_path, "a.jpg", image_bytes((64, 48), fmt="PNG"))
    assert [s.image for s in samples] == ["a.jpg"] and samples[0].transform.reencode
    assert [p.kind for p in report.problems] == ["format_mismatch"]


def test_eps_never_reaches_ghostscript(tmp_path):
    """A `gs` on PATH leaves a mark if run; the old open-any-format code ran it to render the EPS."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    mark = tmp_path / "gs-ran"
    (fake_bin / "gs").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (fake_bin / "gs").chmod(0o755)
    (tmp_path / "a.jpg").write_bytes(EPS)
    script = (
        "import sys; from pathlib import Path; from pipeline.data.images import check_image, ImageCheckError\n"
        "try:\n    check_image(Path(sys.argv[1]).read_bytes(), '.jpg')\n"
        "except ImageCheckError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "a.jpg")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "is EPS data named .jpg" in out
    assert not mark.exists()


def test_a_decompression_bomb_png_is_refused_from_its_header(tmp_path):
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, "PNG")  # 64 MP of zeros: a few kB on disk
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ImageCheckError, match=r"8000x8000 \(64 MP\), over the 50 MP"):
        check_image(bomb.getvalue(), ".png")
    # No pixel data at all: a decode would say "truncated"; the header alone refuses it first.
    with pytest.raises(ImageCheckError, match=r"13000x13000 \(169 MP\)"):
        check_image(png_header(13000, 13000), ".png")
    # Beyond Pillow's own limit (2 x MAX_IMAGE_PIXELS) Pillow refuses at open; still a clean refusal.
    with pytest.raises(ImageCheckError, match="too large to decode safely"):
        check_image(png_header(30000, 30000), ".png")
    # Within a raised budget the same header is read on, and fails only for its missing pixels.
    with pytest.raises(ImageCheckError, match="truncated|corrupt"):
        check_image(png_header(13000, 13000), ".png", max_pixels=200_000_000)


def test_a_bomb_in_a_dataset_is_a_bad_image_and_the_rest_is_used(tmp_path):
    samples, report = inspect_one(tmp_path, "a.png", png_header(13000, 13000))
    assert samples == []
    assert [(p.kind, "169 MP" in p.detail) for p in report.problems] == [("bad_image", True)]


def test_a_dataset_over_the_pixel_budget_is_refused_before_any_decode(tmp_path):
    # 820 headers of 7000x7000 (49 MP each, under the per-image budget): 40.2 gigapixels in all.
    entries = {}
    for number in range(820):
        entries[f"d/{number:04d}.png"] = png_header(7000, 7000)
        entries[f"d/{number:04d}.xml"] = xml(f"{number:04d}.png", (7000, 7000), [("cat", 5, 5, 300, 300)])
    archive = write_zip(tmp_path / "big.zip", entries)
    with pytest.raises(DatasetRejected, match=r"40\.2 gigapixels, more than the 40 gigapixels") as refused:
        prepare(archive, tmp_path / "ws")
    assert refused.value.kind == "too_many_pixels" and "downscale" in str(refused.value)
    assert not (tmp_path / "ws" / "index.json").exists()


def test_the_dataset_budget_counts_header_pixels_of_usable_formats_only(tmp_path):
    (tmp_path / "a.jpg").write_bytes(image_bytes((100, 50)))
    (tmp_path / "b.png").write_bytes(image_bytes((40, 10), fmt="PNG"))
    (tmp_path / "c.jpg").write_bytes(image_bytes((64, 48), fmt="TIFF"))
    (tmp_path / "d.png").write_bytes(png_header(8000, 8000))  # over the per-image budget: never decoded
    names = ["a.jpg", "b.png", "c.jpg", "d.png"]
    assert check_dataset_pixels(tmp_path, names) == 5000 + 400
    assert check_dataset_pixels(tmp_path, names, PixelBudget(dataset=5400)) == 5400
    with pytest.raises(DatasetRejected, match=r"the largest, a\.jpg"):
        check_dataset_pixels(tmp_path, names, PixelBudget(dataset=5399))
