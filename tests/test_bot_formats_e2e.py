"""Chat level: the real bot against the fake Bot API takes YOLO and COCO zips and names the format it read; a zip
mixing two formats and one with no annotations get chat words (which formats, how to export them); "download
cleaned" sends a dataset back as a zip in the format the user picks."""

from __future__ import annotations

import io
import re
import zipfile

from pipeline.data.synthetic import SyntheticSpec, make_dataset_zip
from tests.builders import image_bytes, pair, zip_bytes
from tests.test_bot_e2e import ANN, say, text_of


def upload(tg, user, data: bytes, name: str, expect) -> str:
    mark = tg.mark()
    user.send_document(data, name)
    return text_of(tg.wait_for(lambda m: expect(text_of(m)), chat_id=user.chat_id, since=mark, timeout=120))


def test_yolo_and_coco_zips_are_read_and_their_format_named(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    for fmt, shown in (("yolo", "YOLO"), ("coco", "COCO JSON")):
        data = make_dataset_zip(tmp_path / f"{fmt}.zip", SyntheticSpec(images=20, seed=3), fmt).read_bytes()
        report = upload(tg, ann, data, f"{fmt}.zip", lambda text: text.startswith("Dataset "))
        assert f"({shown}): 20 images, 20 labelled" in report and "circle" in report
        assert "No problems found" in report or "Problems" not in report


def test_mixed_and_missing_annotations_are_explained_in_chat_words(tg, bot):
    ann = tg.user(ANN, "Ann")
    mixed = zip_bytes(pair("a") | {"classes.txt": b"cat\n", "a.txt": b"0 0.5 0.5 0.2 0.2\n"})
    reply = upload(tg, ann, mixed, "mixed.zip", lambda text: "two formats" in text)
    assert "Pascal VOC and YOLO" in reply and "remove the .xml files or the .txt label files" in reply
    bare = zip_bytes({"a.jpg": image_bytes(), "b.jpg": image_bytes(color=(1, 2, 3))})
    reply = upload(tg, ann, bare, "photos.zip", lambda text: "no annotations" in text)
    for word in ("2 images", "Roboflow", "CVAT", "Label Studio", "COCO", "YOLO", "Pascal VOC"):
        assert word in reply
    assert "--" not in reply and "python -m" not in reply


def test_korean_users_get_the_format_and_the_refusal_in_korean(tg, bot, tmp_path):
    kim = tg.user(ANN, "Kim", language_code="ko")
    data = make_dataset_zip(tmp_path / "yolo.zip", SyntheticSpec(images=12, seed=4), "yolo").read_bytes()
    report = upload(tg, kim, data, "yolo.zip", lambda text: text.startswith("데이터셋 "))
    assert "(YOLO 형식)" in report
    mixed = zip_bytes(pair("a") | {"obj.names": b"cat\n", "a.txt": b"0 0.5 0.5 0.2 0.2\n"})
    reply = upload(tg, kim, mixed, "mixed.zip", lambda text: "두 가지 형식" in text)
    assert "Pascal VOC" in reply and "YOLO" in reply


def test_download_cleaned_sends_the_dataset_back_in_the_chosen_format(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    data = make_dataset_zip(tmp_path / "voc.zip", SyntheticSpec(images=20, seed=6), "voc").read_bytes()
    mark = tg.mark()
    ann.send_document(data, "voc.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    dataset = re.match(r"Dataset (\w+) \(Pascal VOC\)", text_of(report)).group(1)
    listing = say(tg, ann, "/datasets", "Your datasets")
    offer = {b["text"]: b["callback_data"] for row in listing["reply_markup"]["inline_keyboard"] for b in row}
    mark = tg.mark()
    ann.press(listing, offer["1: Download cleaned"])
    card = tg.wait_for(lambda m: "In which format?" in text_of(m), chat_id=ANN, since=mark)
    choices = {b["text"]: b["callback_data"] for row in card["reply_markup"]["inline_keyboard"] for b in row}
    assert list(choices) == ["Pascal VOC", "COCO JSON", "YOLO"]
    mark = tg.mark()
    ann.press_forged(card, f"clean:exe:{dataset}")  # not a format: ignored
    ann.press(card, choices["YOLO"])
    sent = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)
    assert sent["filename"] == f"{dataset}-yolo.zip" and "as YOLO: 20 images" in text_of(sent)
    with zipfile.ZipFile(io.BytesIO(sent["bytes"])) as archive:
        names = archive.namelist()
    assert "data.yaml" in names and sum(n.endswith(".txt") for n in names) == 20
    assert {n.split("/")[0] for n in names if "/" in n} == {"train", "valid"}
