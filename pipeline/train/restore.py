"""Start a new job from a pretrained checkpoint: backbone, decoder and head, variable by variable.

Model Garden's ``RetinaNetTask.initialize`` restores only the backbone and the decoder (or the whole model
when every shape matches), so a fine-tune from a COCO detector used to throw its head away. Here every
variable of the chosen modules is matched by its checkpoint key and shape before anything is assigned:
a missing variable or a shape that differs is an error that names it, never a silent partial load. Only
the class-logits layer (``head/_classifier``) is left freshly initialised when the class counts differ,
as the TF Object Detection API's few-shot recipe does; it is kept when they match and the job asks to.

Checkpoints come in two layouts: Model Garden's training checkpoints and published archives keep the
modules at the root (``backbone/...``), a ``tf.train.Checkpoint(model=...)`` under ``model/_backbone/...``.
Runs in the training process only (TensorFlow is imported by the caller).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.errors import TrainingError

log = logging.getLogger(__name__)
MODULES = ("backbone", "decoder", "head")
CLASSIFIER = "_classifier"  # the head's class-logits layer: its width is anchors x classes
_ROOTS = {module: (f"{module}/", f"model/_{module}/") for module in MODULES}
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_SLOT = "/.OPTIMIZER_SLOT/"


@dataclass(frozen=True)
class RestoreReport:
    start: str  # "detector" (the head came too), "backbone" (backbone, maybe decoder) or "scratch"
    modules: tuple[str, ...]
    restored: tuple[str, ...]  # checkpoint keys (without the ``/.ATTRIBUTES/VARIABLE_VALUE`` tail)
    reinitialised: tuple[str, ...]  # our variables left as built: the classifier of another class count
    unmatched: tuple[str, ...]  # checkpoint variables of the restored modules that nothing here took

    def counts(self) -> dict:
        return {
            "start": self.start,
            "restored_modules": list(self.modules),
            "restored": len(self.restored),
            "reinitialised": len(self.reinitialised),
            "unmatched": len(self.unmatched),
        }


def restore_pretrained(model, prefix: str, modules: str | list[str], keep_classifier: bool) -> RestoreReport:
    """Assign ``model``'s variables of ``modules`` ("all": whatever the checkpoint holds) from ``prefix``."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    shapes = {key: shape for key, shape in reader.get_variable_to_shape_map().items() if _SLOT not in key}
    held = {module: root for module in MODULES if (root := _root(shapes, module)) is not None}
    # A module without variables (SpineNet's identity decoder) has nothing to restore, whatever is asked.
    ours = {module: found for module in MODULES if (found := _variables(getattr(model, module, None)))}
    chosen = _chosen_modules(modules, held, ours)
    pairs, reinitialised, unmatched = [], [], []
    for module in chosen:
        keep_logits = keep_classifier or module != "head"
        for relative, variable in ours[module].items():
            key = held[module] + relative
            if not keep_logits and relative.startswith(CLASSIFIER + "/"):
                reinitialised.append(key)
                continue
            _check(key, variable, shapes, keep_classifier)
            pairs.append((key, variable))
        taken = {held[module] + relative for relative in ours[module]}
        unmatched += [key for key in shapes if key.startswith(held[module]) and key not in taken]
    for key, variable in pairs:
        variable.assign(reader.get_tensor(key))
    report = RestoreReport(
        start="detector" if "head" in chosen else "backbone",
        modules=chosen,
        restored=tuple(key.removesuffix(_VALUE) for key, _ in pairs),
        reinitialised=tuple(key.removesuffix(_VALUE) for key in reinitialised),
        unmatched=tuple(key.removesuffix(_VALUE) for key in unmatched),
    )
    log.info("pretrained start %s: %s", prefix, report.counts())
    return report


def build_variables(model, input_size) -> None:
    """Create every variable the model will have: a head makes its own on its first call, which training has not
    made yet, and a restore must match them all before any step. Inference mode: no batch-norm statistic moves.
    Call it in the distribution strategy's scope, where the training step would have created them."""
    import tensorflow as tf

    height, width = input_size[:2]
    features = model.backbone(tf.zeros([1, height, width, 3]), training=False)
    if model.decoder is not None:
        features = model.decoder(features, training=False)
    model.head(features, training=False)


def _root(shapes: dict, module: str) -> str | None:
    return next((root for root in _ROOTS[module] if any(key.startswith(root) for key in shapes)), None)


def _chosen_modules(modules: str | list[str], held: dict, ours: dict) -> tuple[str, ...]:
    if "backbone" not in held:
        raise TrainingError(
            "The pretrained checkpoint holds no detector backbone (no 'backbone/' variables): it is not a Model "
            "Garden detection or classification checkpoint. Give another one, or train from scratch.",
            kind="checkpoint_mismatch",
        )
    everything = modules == "all" or list(modules) == ["all"]
    wanted = tuple(m for m in MODULES if m in ours and (m in held if everything else m in modules))
    missing = [m for m in wanted if m not in held]
    if missing or not wanted:
        raise TrainingError(
            f"The pretrained checkpoint has no {' or '.join(missing) or 'module named ' + str(modules)} to restore "
            f"(it holds {', '.join(held)}); set task.init_checkpoint_modules to some of those.",
            kind="checkpoint_mismatch",
        )
    return wanted


def _variables(layer) -> dict:
    """relative checkpoint key -> variable, for every variable under ``layer``.

    The path a tf.train.Checkpoint gives a variable: the names of the trackable children from ``layer`` down,
    breadth first, so that a variable reachable twice gets its shortest path, as the saver does.
    """
    import tensorflow as tf

    if layer is None:
        return {}
    found, queue, seen = {}, [("", layer)], {id(layer)}
    while queue:
        path, node = queue.pop(0)
        for name, child in node._trackable_children(save_type="checkpoint").items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}{name}"
            if isinstance(child, tf.Variable) or hasattr(child, "_distributed_container"):
                found[child_path + _VALUE] = child
            else:
                queue.append((child_path + "/", child))
    return found


def _check(key: str, variable, shapes: dict, keep_classifier: bool) -> None:
    """An error that names the variable when the checkpoint lacks it or holds another shape."""
    name = key.removesuffix(_VALUE)
    if key not in shapes:
        raise TrainingError(
            f"The pretrained checkpoint has no variable {name}, which this model has: the checkpoint was "
            "trained with another architecture or normalisation (a different backbone, decoder, head or norm "
            "layer). Pick the catalogue model it belongs to, or train from scratch.",
            kind="checkpoint_mismatch",
        )
    theirs, ours = list(shapes[key]), variable.shape.as_list()
    if theirs != ours:
        why = (
            "the checkpoint's class count differs from this dataset's, so its classifier cannot be kept"
            if keep_classifier and f"/{CLASSIFIER}/" in f"/{name}/"
            else "the checkpoint was trained with another architecture (filters, levels, anchors or input)"
        )
        raise TrainingError(
            f"The pretrained variable {name} has shape {theirs}, this model's {ours}: {why}.",
            kind="checkpoint_mismatch",
        )
