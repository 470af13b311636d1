import os
import sys

from pipeline.cli.main import main

# The one place the CLI reads the environment: nvidia-smi lists every GPU, TensorFlow only these.
sys.exit(main(visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")))
