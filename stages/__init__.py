"""Stages of the Fashion-MNIST pipeline: run each as `python -m stages.<name>`."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU-only machines) buries the stage output;
# Python-level errors and warnings still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
