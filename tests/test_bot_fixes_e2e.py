"""One-tap fixes under a dataset's report, through the real bot against the fake Bot API (issue 11).

A zip whose boxes say "Cat" in some files and "cat" in others gets a merge button under its report;
pressing it runs the /labels merge service and the same card says what it did. A Korean user gets the
report, its problems and the button in Korean."""

from __future__ import annotations

from bot.fixes import MAX_BUTTONS, Fix, offers
from tests.builders import image_bytes, write_zip, xml
from tests.test_bot_e2e import ANN, BOB, say, text_of
from tests.test_bot_korean_e2e import assert_korean


def cats_zip(path):
    """Twelve photos: eight boxes labelled "cat", four "Cat" (the spelling with more boxes is suggested)."""
    entries = {}
    for number in range(12):
        label = "Cat" if number % 3 == 0 else "cat"
        entries[f"photos/{number:02}.jpg"] = image_bytes(color=(20 * number, 90, 160))
        entries[f"photos/{number:02}.xml"] = xml(f"{number:02}.jpg", (64, 48), [(label, 4, 4, 40, 40)])
    return write_zip(path, entries)


def variant(names: list[str], into: str) -> dict:
    return {
        "kind": "label_variant",
        "file": "a.xml",
        "detail": "",
        "action": "",
        "params": {"names": names, "into": into},
    }


def test_only_variants_a_merge_can_name_are_offered_in_report_order():
    problems = [
        {"kind": "bad_image", "file": "x.jpg", "detail": "", "action": "", "params": {}},
        variant(["a,b", "A,B"], "a,b"),  # a comma or "=" would change what the merge says
        variant(["Cat", "cat"], "cat"),
        variant(["x=1", "X=1"], "x=1"),
        {"kind": "label_variant", "file": "b.xml", "detail": "", "action": ""},  # checked before params existed
        variant(["Red car", "red car"], "Red car"),
    ]
    assert offers({"problems": problems}) == [Fix(("Cat", "cat"), "cat"), Fix(("Red car", "red car"), "Red car")]
    many = [variant([f"k{i}", f"K{i}"], f"k{i}") for i in range(MAX_BUTTONS + 3)]
    assert len(offers({"problems": many})) == MAX_BUTTONS and offers({}) == []


def upload(tg, user, zipped, lead: str) -> dict:
    mark = tg.mark()
    user.send_document(zipped.read_bytes(), zipped.name)
    return tg.wait_for(lambda m: text_of(m).startswith(lead), chat_id=user.chat_id, since=mark, timeout=120)


def test_a_label_variant_gets_a_merge_button_that_merges(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    report = upload(tg, ann, cats_zip(tmp_path / "cats.zip"), "Dataset ")
    assert "label_variant x1: kept apart; if they are one class, tap the merge button" in text_of(report)
    assert "labels Cat, cat differ only in case or spaces" in text_of(report)
    assert "`" not in text_of(report) and "--" not in text_of(report)
    (button,) = [button for row in report["reply_markup"]["inline_keyboard"] for button in row]
    assert button["text"] == "Merge Cat, cat → cat"
    assert len(button["callback_data"].encode()) <= 64 and "Cat" not in button["callback_data"]
    before = text_of(say(tg, ann, "/labels", "Classes (id"))
    assert "Cat" in before and "cat" in before

    mark = tg.mark()
    ann.press(report, button["callback_data"])
    card = tg.wait_for(
        lambda m: m["message_id"] == report["message_id"] and "Merged" in text_of(m), chat_id=ANN, since=mark
    )
    assert text_of(card).startswith(text_of(report))  # the report stays; the answer follows it
    assert text_of(card).endswith("Merged Cat, cat into cat. The classes now: cat.")
    assert not (card.get("reply_markup") or {}).get("inline_keyboard")  # nothing left to merge
    after = text_of(say(tg, ann, "/labels", "Classes (id"))
    assert "1: cat" in after and "Cat" not in after

    mark = tg.mark()  # the same tap again (a client that kept the old card): refused in the card
    ann.press_forged(report, button["callback_data"])
    again = tg.wait_for(
        lambda m: m["message_id"] == report["message_id"] and "There is no class 'Cat'" in text_of(m),
        chat_id=ANN,
        since=mark,
    )
    assert "/labels" in text_of(again)


def test_a_forged_fix_button_changes_nothing(tg, bot, tmp_path):
    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    report = upload(tg, ann, cats_zip(tmp_path / "cats.zip"), "Dataset ")
    data = report["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    dataset_id = data.split(":")[1]
    for forged in (f"fix:{dataset_id}:7", f"fix:{dataset_id}:-1", f"fix:{dataset_id}:cat", f"fix:{dataset_id}"):
        mark = tg.mark()
        ann.press_forged(report, forged)
        tg.wait_for(lambda m: "no longer applies" in text_of(m), chat_id=ANN, since=mark)
    help_text = say(tg, bob, "/start", "/train")
    mark = tg.mark()
    bob.press_forged(help_text, data)  # Ann's dataset, from Bob: "not found", never "not yours"
    tg.wait_for(lambda m: f"No dataset '{dataset_id}' of yours" in text_of(m), chat_id=BOB, since=mark)
    assert "Cat" in text_of(say(tg, ann, "/labels", "Classes (id"))


def test_a_korean_user_gets_the_report_problems_and_button_in_korean(tg, bot, tmp_path):
    ko = tg.user(BOB, "지민", language_code="ko")
    report = upload(tg, ko, cats_zip(tmp_path / "고양이.zip"), "데이터셋 ")
    assert "대소문자·공백만 다른 라벨 x1" in text_of(report) and "라벨 Cat, cat: 대소문자나 공백만 달라요" in text_of(
        report
    )
    (button,) = [button for row in report["reply_markup"]["inline_keyboard"] for button in row]
    assert button["text"] == "Cat, cat → cat 합치기"
    assert_korean([report])
    mark = tg.mark()
    ko.press(report, button["callback_data"])
    card = tg.wait_for(
        lambda m: m["message_id"] == report["message_id"] and "합쳤어요" in text_of(m), chat_id=BOB, since=mark
    )
    assert_korean([card])
    assert "클래스: cat." in text_of(card)
