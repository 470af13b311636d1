"""A prepared workspace -> a training job folder, through Model Garden's trainer.

Importing this package is cheap: only ``session``, ``supervisor``, ``coco_evaluator``
and ``launch.run_job`` load TensorFlow, so the bot and the CLI can plan, start,
watch and stop jobs without it.

Planning: ``catalogue`` (the detectors and which to recommend), ``hardware`` (what the
machine has), ``config`` (the Model Garden ExperimentConfig and the schedule),
``chat_overrides`` (what a chat user may change), ``weights`` (pretrained checkpoints).
Running: ``launch`` (create and run a job), ``job_folder`` (its files and kept state),
``job_process`` (start detached, find, stop), ``supervisor`` (the loop: NaN roll-back,
OOM halving, stop), ``session`` (TensorFlow side), ``devices``.
Reporting: ``events`` (the JSON-lines stream everyone reads), ``metrics`` (COCO AP and
confusion on plain boxes), ``coco_evaluator`` (Model Garden's evaluator with per-class
AP), ``plots``.
"""
