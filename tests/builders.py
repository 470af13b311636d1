"""Small real files for tests: images made with Pillow, VOC XML, zips."""

from __future__ import annotations

import io
import shutil
import warnings
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.data.synthetic import voc_xml


def image_bytes(size=(64, 48), color=(200, 30, 30), mode="RGB", fmt="JPEG", orientation=None) -> bytes:
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def circle_image(size=(480, 300), box=(250, 70, 370, 190)) -> Image.Image:
    """A red disc in ``box`` on a plain background: what a model trained on the shapes dataset must find."""
    image = Image.new("RGB", size, (150, 140, 120))
    ImageDraw.Draw(image).ellipse(box, fill=(220, 50, 40))
    return image


def xml(filename: str, size, objects=(), extra: str = "") -> bytes:
    text = voc_xml(filename, size[0], size[1], objects) if size else voc_xml(filename, 0, 0, objects)
    if not size:
        text = text.replace("<size><width>0</width><height>0</height><depth>3</depth></size>", "")
    return text.replace("</annotation>", extra + "</annotation>").encode()


def zip_bytes(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries``: a dict, or (name or ZipInfo, bytes) pairs, where a name may repeat on purpose."""
    pairs = entries.items() if isinstance(entries, dict) else entries
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about a duplicate name
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in pairs:
                archive.writestr(name, data)
    return buffer.getvalue()


def write_zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    path.write_bytes(zip_bytes(entries, compression))
    return path


def pair(name: str, size=(64, 48), objects=(("cat", 5, 5, 30, 30),), **image_kwargs) -> dict[str, bytes]:
    """A JPEG and its XML, named ``name``.jpg / ``name``.xml."""
    return {f"{name}.jpg": image_bytes(size, **image_kwargs), f"{name}.xml": xml(f"{name}.jpg", size, objects)}


def store_with_dataset(db: Path, user_id: int, workspace: Path, classes=("circle",)):
    """A real SQLite store with one user and one ready dataset at ``workspace``: (store, dataset)."""
    from storage import open_store

    store = open_store(db)
    store.ensure_user(user_id, f"user{user_id}")
    dataset = store.add_dataset(user_id, "shapes.zip", str(workspace), 1000)
    return store, store.finish_dataset(dataset.id, {"images": 40, "classes": list(classes)})


def copy_job(src: Path, dst: Path) -> Path:
    """A training job folder copied to ``dst``, for a test that changes it (the shared ``trained_job`` is read-only).

    The job's JSON files name their own folder by absolute path (the label map, the best checkpoint); the copy's
    name the copy. The workspace it was trained on is shared, not copied.
    """
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("train.pid"))
    for path in dst.glob("*.json"):
        path.write_text(path.read_text().replace(str(src.absolute()), str(dst.absolute())))
    for path in dst.glob("*/checkpoint"):  # TensorFlow's index of a checkpoint folder
        path.write_text(path.read_text().replace(str(src.absolute()), str(dst.absolute())))
    return dst
