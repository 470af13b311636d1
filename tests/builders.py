"""Small real files for tests: images made with Pillow, VOC XML, zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

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


def xml(filename: str, size, objects=(), extra: str = "") -> bytes:
    text = voc_xml(filename, size[0], size[1], objects) if size else voc_xml(filename, 0, 0, objects)
    if not size:
        text = text.replace("<size><width>0</width><height>0</height><depth>3</depth></size>", "")
    return text.replace("</annotation>", extra + "</annotation>").encode()


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
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
