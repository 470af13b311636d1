"""The Korean of bot/texts/formats.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from bot.texts.formats import _FORMAT_NAMES


def format_name(key: str | None) -> str:
    """Format names are proper names, the same in Korean."""
    return _FORMAT_NAMES.get(key or "voc", key or "Pascal VOC")


_FILES = {
    "voc": ".xml 파일",
    "coco": "COCO .json 파일",
    "yolo": ".txt 라벨 파일",
    "labelme": "LabelMe .json 파일",
    "csv": ".csv 파일",
}

HOW_TO_EXPORT = (
    "읽을 수 있는 형식은 Pascal VOC(이미지마다 .xml), COCO JSON, YOLO(이미지마다 .txt와 data.yaml 또는 obj.names), "
    "LabelMe JSON, TensorFlow CSV예요. 내보내는 방법:\n"
    "- Roboflow: Download Dataset > COCO, YOLOv8 또는 Pascal VOC > download zip\n"
    "- CVAT: Export dataset > COCO 1.0, YOLO 1.1 또는 PASCAL VOC 1.1, Save images 켜기\n"
    "- Label Studio: Export > COCO, YOLO 또는 Pascal VOC XML, 그다음 이미지와 함께 zip으로 묶기\n"
    "그 zip을 여기로 보내 주세요."
)


def no_annotations(details: dict) -> str:
    return f"이 zip에는 이미지가 {details['images']}장 있지만 읽을 수 있는 주석이 없어요.\n{HOW_TO_EXPORT}"


def mixed_formats(details: dict) -> str:
    first, second = details["formats"][:2]
    return (
        f"이 zip에는 두 가지 형식, {format_name(first)}와(과) {format_name(second)}의 주석이 함께 있어요. "
        f"zip 하나에는 한 형식만 읽어요: {_FILES.get(first, first)}이나 {_FILES.get(second, second)}을 지우고 "
        "다시 보내 주세요."
    )


_FOLDERS = {"train": "학습", "valid": "검증", "test": "테스트", "dataset": "폴더 하나"}


def cleaned_choose(dataset_id: str) -> str:
    return (
        f"데이터셋 {dataset_id}의 정리본: 학습에 들어가는 이미지에 클래스 편집과 분할을 적용했어요. "
        "어떤 형식으로 받을까요?"
    )


def cleaned_caption(dataset_id: str, fmt: str, images: int, boxes: int, folders: list[str]) -> str:
    where = ", ".join(_FOLDERS.get(folder, folder) for folder in folders)
    return f"데이터셋 {dataset_id} 정리본, {format_name(fmt)} 형식: 이미지 {images}장, 상자 {boxes}개({where})."


def cleaned_too_big(dataset_id: str, size_mb: float, limit_mb: int) -> str:
    return (
        f"데이터셋 {dataset_id} 정리본은 {size_mb:.0f} MB라서 보낼 수 있는 {limit_mb} MB를 넘어요. "
        "봇 관리자가 자체 Bot API 서버로 한도를 올릴 수 있어요."
    )
