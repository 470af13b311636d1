"""Class names drawn on images (previews, detections, /predict) show Korean as glyphs, not as the
missing-glyph box (``.notdef``) that PIL's default font draws for every Hangul syllable."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image, ImageDraw, ImageFont

from pipeline.drawing import class_color, label_box, label_font

NOT_IN_ANY_FONT = "\ue000"  # a private-use code point: every font draws its .notdef glyph for it


def rendered(font, text: str) -> bytes:
    image = Image.new("L", (80, 40))
    ImageDraw.Draw(image).text((4, 4), text, fill=255, font=font)
    return image.tobytes()


def has_glyphs(font, text: str) -> bool:
    """Each character draws something, and not the font's .notdef glyph."""
    notdef = rendered(font, NOT_IN_ANY_FONT)
    return all(rendered(font, char) not in (notdef, rendered(font, " ")) for char in text)


def test_korean_class_names_render_as_glyphs_not_notdef_boxes():
    assert has_glyphs(label_font(14), "원사각형")
    assert has_glyphs(label_font(14), "circle")  # Latin names keep working


def test_pils_default_font_fails_that_check():
    """Why the font ships with detbot: the default draws "원" exactly as its .notdef box."""
    assert not has_glyphs(ImageFont.load_default(size=14), "원")
    assert has_glyphs(ImageFont.load_default(size=14), "circle")


def test_label_box_draws_with_the_hangul_font_at_the_callers_size():
    """The callers (preview, predict) pass PIL's default font: its size is kept, its face replaced."""

    def drawn(font) -> bytes:
        image = Image.new("RGB", (120, 60))
        label_box(ImageDraw.Draw(image), (10, 10, 100, 50), "원", class_color("원"), font)
        return image.tobytes()

    default = ImageFont.load_default(size=20)
    assert drawn(default) == drawn(label_font(20)) != drawn(ImageFont.load_default(size=14))
    assert label_font(20) is label_font(20)  # loaded once


def test_the_font_is_found_without_importing_its_package_or_tensorflow():
    """koreanize_matplotlib restyles matplotlib when imported; pipeline.data must stay free of TensorFlow."""
    code = (
        "import sys; from pipeline.drawing import label_font; import pipeline.data.preview; label_font(12); "
        "print(sorted(m for m in ('koreanize_matplotlib', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
