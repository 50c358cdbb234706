import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("DISABLE_CUDA", "1")

import sys

sys.path.insert(0, os.path.dirname(__file__))
