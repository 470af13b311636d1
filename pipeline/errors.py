"""Exceptions of the dataset and training pipeline.

Every message is written for the person at the CLI: what is wrong, in which file, and
what to do (it may name the CLI's options). Each error a chat user can meet also has a
specific ``kind`` and its data in ``details`` (names, counts, sizes, where in the zip),
from which the bot words it in the user's language with chat commands
(``bot/texts/pipeline_errors.py``); a kind it does not know shows the message.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline reports to a user."""

    kind = "pipeline_error"

    def __init__(self, message: str, *, kind: str | None = None, details: dict | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.details = details or {}

    def to_json(self) -> dict:
        payload = {"kind": self.kind, "message": str(self)}
        if self.details:
            payload["details"] = self.details
        return payload


class DatasetRejected(PipelineError):
    """The uploaded archive cannot be used at all (unsafe, corrupt, or empty)."""

    kind = "dataset_rejected"


class LabelMapError(PipelineError):
    """A label map file is malformed or does not cover the labels in the data."""

    kind = "label_map_error"


class WorkspaceError(PipelineError):
    """A workspace is missing a step's output, or a step was asked something impossible."""

    kind = "workspace_error"


class UsageError(PipelineError):
    """A step was asked something impossible: a bad ratio, an unknown class name."""

    kind = "usage_error"


class WeightsError(PipelineError):
    """Pretrained weights cannot be fetched or do not match their checksum."""

    kind = "weights_error"


class TrainingError(PipelineError):
    """Training cannot start or cannot go on (bad config, NaN beyond recovery, no data)."""

    kind = "training_error"


class ExportError(PipelineError):
    """The trained model cannot be exported, or the export does not check out."""

    kind = "export_error"


class ClusterError(PipelineError):
    """The cluster an executor submits to cannot be reached, refuses a run, or is not set up as detbot needs."""

    kind = "cluster_error"
