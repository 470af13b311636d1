"""A user's dataset zip -> a prepared workspace, without TensorFlow.

In the order the data goes through them:
``ingest`` (safe extraction; ``zip_directory`` reads the table of contents) ->
``pairing`` (which annotation belongs to which image) -> ``voc`` (hardened XML parsing)
and ``images`` (image checks) -> ``pair_check`` (one pair -> a ``Sample`` and problems) ->
``dataset_health`` (all pairs in parallel, duplicates, label variants, the report) ->
``split`` (seeded, stratified) -> ``class_edits`` and ``label_plan`` (renames, merges,
drops, the label map) -> ``records`` (sharded TFRecords; ``tfrecord`` is the format) ->
``preview`` (a contact sheet for the chat).

Public surface: ``steps`` runs each step on a ``workspace.Workspace`` (``inspect``,
``split``, ``labels``, ``records``, ``prepare``); ``samples`` and ``reports`` are the
typed results; ``synthetic`` makes shapes datasets for demos, tests and benchmarks.
"""
