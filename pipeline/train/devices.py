"""TensorFlow's devices in a process detbot starts, set before TensorFlow first touches a GPU.

By default TensorFlow takes nearly all of a GPU's memory for the first process, so a second
one on the same GPU (an export next to a training, the export's checking process next to
the export) runs out; with memory growth each takes what it uses. Which GPUs a process may
use is decided before it starts, by its ``CUDA_VISIBLE_DEVICES``. TensorFlow is passed in,
never imported here: the dataset path and the bot must not load it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def configure_tensorflow(tf, use_gpu: bool = True) -> str:
    """Grow GPU memory as needed (or hide every GPU), then log and return the devices TensorFlow uses.

    Call right after ``import tensorflow as tf``. Calling it again changes nothing. Once
    TensorFlow has initialised its devices they cannot change: that is logged, not raised.
    """
    gpus = tf.config.list_physical_devices("GPU")
    try:
        if use_gpu:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
        elif gpus:
            tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:
        log.warning("TensorFlow had already set up its devices, so they stay as they are: %s", error)
    device = _describe(tf)
    log.info("TensorFlow runs on %s", device)
    return device


def _describe(tf) -> str:
    # Reading the visible devices and their details does not initialise them, unlike listing logical ones.
    visible = tf.config.get_visible_devices("GPU")
    if not visible:
        return "the CPU"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", "unknown GPU") for gpu in visible]
    growth = (
        "memory growth on"
        if all(tf.config.experimental.get_memory_growth(gpu) for gpu in visible)
        else "memory growth off"
    )
    shown = ", ".join(f"{gpu.name.removeprefix('/physical_device:')} ({name})" for gpu, name in zip(visible, names))
    return f"{shown}; {growth}"
