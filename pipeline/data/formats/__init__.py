"""The annotation formats a dataset zip may come in, each read into the same ``VocAnnotation`` per image.

``detect`` finds the zip's one format and pairs its annotations with the images; one module
per format reads it (``coco``, ``yolo``, ``labelme``, ``tf_csv``; Pascal VOC is ``pipeline.data.voc``),
all through ``untrusted`` (capped JSON/YAML/CSV/text). ``writers`` turns checked samples back
into a VOC, COCO or YOLO zip (``python -m pipeline export-data``).
"""
