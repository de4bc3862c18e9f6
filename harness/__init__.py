"""Cross-platform (ROCm / CUDA / CPU) regression harness for vLLM."""

__version__ = "0.1.0"
