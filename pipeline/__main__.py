import logging
import os
import sys

from pipeline.cli.main import main

# The one place the CLI reads the environment: nvidia-smi lists every GPU, TensorFlow only these.
code = main(visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
if sys.argv[1:2] == ["train"] and "tensorflow" in sys.modules:
    # A trainer's interpreter shutdown can wait minutes on tf.data's idle threads (seen in Ray jobs, holding the
    # GPU) after every file of its job is written and closed and its answer printed: it ends here instead.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
sys.exit(code)
