"""The Fashion-MNIST pipeline's shared code: what the stages (stages/) and tools (tools/) import."""

import os

# TensorFlow's C++ logging below errors stays off unless FMNIST_VERBOSE asks for it (fmnist.exact_mode: why this alone
# does not silence its start-up lines).
if os.environ.get("FMNIST_VERBOSE", "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
