"""A Korean-speaking user, through the real bot against the fake Bot API (issue 11, "Korean and English").

Telegram tells the bot the language of the user's app (``language_code`` "ko-KR"): every reply of a whole
flow up to the /train card is Korean, /settings switches to English and back, and the command menu is
registered in both languages."""

from __future__ import annotations

import re

from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from tests.fake_telegram import FakeTelegram
from tests.test_bot_e2e import ANN, EVE, say, text_of

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Words an English sentence can hardly do without; none is a command, a setting or a technical term.
ENGLISH = re.compile(
    r"\b(the|and|of|to|is|are|your|you|it|in|on|with|for|from|this|that|send|will|can|not|has|have|was|no)\b",
    re.IGNORECASE,
)
# What stays Latin in Korean: commands with their arguments, settings, file names.
LATIN_TERMS = re.compile(r"/\w+(?: [\w.,=|\[\]]+)*|\S*[=_.]\S*")


def english_in(text: str) -> list[str]:
    """The English words of ``text`` once commands, settings and file names are left out."""
    return ENGLISH.findall(LATIN_TERMS.sub(" ", text))


def assert_korean(events: list[dict]) -> None:
    """Every send and every edit (a card becomes its answer), and every button on them."""
    for event in events:
        text = text_of(event)
        assert HANGUL.search(text), f"no Hangul in: {text!r}"
        assert not english_in(text), f"English {english_in(text)} in: {text!r}"
        for label, _ in FakeTelegram.buttons(event):
            assert not english_in(label), f"English {english_in(label)} on the button {label!r}"


def test_the_robust_check_tells_korean_from_english():
    assert not english_in("사용법: /split [val_ratio] [seed], 예: /split 0.2 1")
    assert not english_in("고치기: /labels rename a=b | merge a,b=c | drop x. label_map.pbtxt를 보내요.")
    assert english_in("Send me a .zip of your Pascal VOC dataset (images + LabelImg XML files) to begin.")
    assert english_in("모델: x. 다음: Next steps are the same.")  # Hangul alone would not catch a mixed reply


def test_a_korean_user_hears_korean_from_start_to_the_train_card(tg, bot, tmp_path):
    ko = tg.user(ANN, "지민", language_code="ko-KR")
    say(tg, ko, "/start", "Pascal VOC")
    mark = tg.mark()
    zipped = make_voc_zip(tmp_path / "도형.zip", SyntheticSpec(images=30, seed=5, classes=("원", "사각형")))
    ko.send_document(zipped.read_bytes(), "도형.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("데이터셋 "), chat_id=ANN, since=mark, timeout=120)
    assert "원:" in text_of(report) and "사각형:" in text_of(report)
    tg.wait_for(lambda m: m["kind"] == "photo" and "상자" in text_of(m), chat_id=ANN, since=mark)
    assert "검증 6장" in text_of(say(tg, ko, "/split 0.2 3", "분할:"))
    assert "사각형" in text_of(say(tg, ko, "/labels", "클래스 (id"))
    card = say(tg, ko, "/model", "검출기를 고르세요")
    mark = tg.mark()
    ko.press(card, "model:mobilenetv2-fpn")
    tg.wait_for(lambda m: "모델: mobilenetv2-fpn" in text_of(m), chat_id=ANN, since=mark)
    card = say(tg, ko, "/train 20 steps", "학습 준비")
    assert "사각형, 원" in text_of(card) and "학습 24장 / 검증 6장" in text_of(card)
    assert [label for label, _ in tg.buttons(card)] == ["시작", "취소"]
    mark = tg.mark()
    ko.press(card, tg.buttons(card)[1][1])
    tg.wait_for(lambda m: m["message_id"] == card["message_id"] and "취소" in text_of(m), chat_id=ANN, since=mark)
    say(tg, ko, "/status", "/train")
    say(tg, ko, "hello", "/help")
    assert_korean(tg.events(ANN))


def test_settings_switch_to_english_and_back(tg, bot):
    ko = tg.user(ANN, "지민", language_code="ko")
    menu = say(tg, ko, "/settings", "설정")
    assert [label for label, _ in tg.buttons(menu)][:3] == ["English", "한국어", "텔레그램 앱 언어대로"]
    mark = tg.mark()
    ko.press(menu, "lang:en")
    tg.wait_for(lambda m: "I reply in English" in text_of(m), chat_id=ANN, since=mark)
    say(tg, ko, "/start", "trains an object detector")  # the app is still Korean: the choice wins
    menu = say(tg, ko, "/settings", "Language: English")
    mark = tg.mark()
    ko.press(menu, "lang:ko")
    tg.wait_for(lambda m: "한국어로 답해요" in text_of(m), chat_id=ANN, since=mark)
    say(tg, ko, "/start", "물체 검출기")


def test_the_app_language_counts_until_a_choice_and_strangers_hear_theirs(tg, bot):
    ann = tg.user(ANN, "Ann", language_code="en-GB")
    say(tg, ann, "/start", "trains an object detector")
    ann.language_code = "ko"  # the user switched their Telegram app to Korean
    say(tg, ann, "/start", "물체 검출기")
    say(tg, tg.user(EVE, "이브", language_code="ko"), "/start", "비공개")


def test_the_command_menu_is_registered_in_english_and_korean(tg, bot):
    tg.wait_until(lambda: tg.commands("ko"), what="the Korean command menu")
    english, korean = tg.commands(), tg.commands("ko")
    assert [c["command"] for c in english] == [c["command"] for c in korean]
    assert "settings" in [c["command"] for c in english]
    assert all(HANGUL.search(c["description"]) for c in korean)
    assert not any(HANGUL.search(c["description"]) for c in english)
    calls = [c for c in tg.requests if c.method.lower() == "setmycommands"]
    assert sorted(str(c.params.get("language_code", "")) for c in calls) == ["", "ko"]
