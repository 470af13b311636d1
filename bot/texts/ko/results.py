"""The Korean of bot/texts/results.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

# --- 결과 앨범과 AP50 설명 ---------------------------------------------------------------------------


def curves_caption(job_id: str) -> str:
    return f"작업 {job_id}: 학습 손실과 검증 AP"


def confusion_caption(job_id: str) -> str:
    return f"작업 {job_id}: 혼동 행렬(행: 실제 클래스, 열: 모델이 답한 클래스)"


def per_class_caption(job_id: str) -> str:
    return f"작업 {job_id}: 클래스별 AP(가장 약한 클래스가 아래에 있어요)"


def samples_caption(job_id: str) -> str:
    return f"작업 {job_id}: 내보낸 모델이 검증 이미지에서 찾은 것"


def ap50_explained(ap50: float) -> str:
    return (
        f"AP50 {ap50:.2f}: 찾은 상자가 실제 상자와 절반 이상 겹치면 맞은 것으로 쳐요. 놓친 물체와 틀린 상자는 "
        "점수를 깎아요. 1.0이 완벽하고, 0.5면 절반쯤을 잘 찾는 거예요."
    )


# --- 아카이브: 들어 있는 것, 다음에 할 일, 너무 클 때 ------------------------------------------------------

_MODELS = {"saved_model": "SavedModel", "float32": "TFLite float32", "float16": "TFLite float16", "int8": "TFLite int8"}


def archive_caption(
    job_id: str, size_mb: float, models: list[tuple[str, str, float]], checkpoint_step: int | None
) -> str:
    lines = [f"작업 {job_id}의 모델이에요({size_mb:.1f} MB):"]
    lines += [f"- {_MODELS[name]} ({file}), {mb:.1f} MB" for name, file, mb in models if name in _MODELS]
    extras = ["label_map.pbtxt(클래스 이름)", "README.md", "metrics.json"]
    if checkpoint_step is not None:
        extras.insert(1, f"checkpoint/(스텝 {checkpoint_step}, 이어서 학습할 때)")
    lines.append("- " + ", ".join(extras))
    files = {name: file for name, file, _ in models}
    if "saved_model" in files:
        lines.append(
            "Python: 압축을 풀고 pip install tensorflow pillow를 한 뒤, README.md의 코드를 사진과 함께 실행하면 "
            "찾은 물체를 하나씩 보여 줘요."
        )
    lite = next((files[name] for name in ("float16", "float32", "int8") if name in files), None)
    if lite:
        lines.append(
            f"Android: {lite} 파일을 앱의 assets에 넣고 TFLite Task Library의 ObjectDetector로 "
            "불러오세요(Kotlin 코드는 README.md에 있어요). 클래스 이름은 모델 안에 들어 있어요."
        )
    return "\n".join(lines)


def exporting(job_id: str) -> str:
    return f"작업 {job_id}의 모델 아카이브를 준비하고 있어요. 곧 보내 드려요."


def too_big_offer(size_mb: float, limit_mb: int, offers: list[tuple[str, float, list[str]]]) -> str:
    lines = [
        f"전체 아카이브는 {size_mb:.0f} MB로, 봇이 보낼 수 있는 {limit_mb} MB를 넘어요. 한도에 맞는 작은 아카이브:"
    ]
    for kind, mb, models in offers:
        what = ", ".join(_MODELS.get(name, name) for name in models)
        use = "휴대폰용(Android, iOS)" if kind == "tflite" else "Python과 TensorFlow Serving용"
        lines.append(f"- {what}: {mb:.1f} MB, {use}")
    lines.append("또는 전체 아카이브를 여러 조각으로 받을 수 있어요. 조각은 컴퓨터에서만 합칠 수 있어요.")
    return "\n".join(lines)


def offer_button(kind: str, size_mb: float) -> str:
    return f"{'TFLite만' if kind == 'tflite' else 'SavedModel만'} ({size_mb:.1f} MB)"


def parts_button(parts: int) -> str:
    return f"전체를 {parts}개 조각으로"


def parts_join(archive_name: str, size_mb: float, limit_mb: int, parts: int) -> str:
    return (
        f"아카이브가 {size_mb:.0f} MB로 봇이 보낼 수 있는 {limit_mb} MB를 넘어서 {parts}개 조각으로 보냈어요. "
        "컴퓨터의 한 폴더에 저장한 뒤 합치세요:\n"
        f"- Windows: {archive_name}.001을 7-Zip으로 열거나(나머지 조각은 알아서 읽어요), 명령 프롬프트에서: "
        f"copy /b {archive_name}.001+{archive_name}.002{'+...' if parts > 2 else ''} {archive_name}\n"
        f"- macOS, Linux: cat {archive_name}.0* > {archive_name}\n"
        "휴대폰에서는 합칠 수 없어요. 한도에 맞는 작은 아카이브가 있으면 /export에서 고를 수 있고, 합칠 필요가 없어요."
    )


OFFER_EXPIRED = "그 아카이브는 이제 없어요. /export로 다시 만들 수 있어요."

# --- /settings: 언어, 알림, 손실 그래프 ------------------------------------------------------------------


def settings(language: str, quiet: bool, plot_minutes: int | None, default_minutes: float) -> str:
    sound = "조용히: 최종 결과와 알림만 소리가 나요" if quiet else "모든 메시지에 소리가 나요(진행 사진도)"
    minutes = default_minutes if plot_minutes is None else plot_minutes
    curves = "끝날 때까지 없음" if minutes == 0 else f"{minutes:g}분마다 하나"
    return (
        f"설정이에요.\n언어: {language}.\n알림: {sound}.\n학습 중 손실 그래프: {curves}. "
        "평가 그래프도 같은 간격을 지켜요."
    )


QUIET_ON, QUIET_OFF = "조용히", "모든 메시지에 소리"


def plot_button(minutes: int) -> str:
    return "그래프 없음" if minutes == 0 else f"그래프 {minutes}분마다"
