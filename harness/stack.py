"""The components of the stack inside an image that a result records (harness.worker.stack reads
them) and a bisect report compares (harness.host.bisect.components), with their display names."""

COMPONENTS = ("vllm", "vllm_commit", "torch", "torch_hip", "torch_cuda", "triton", "aiter",
              "rocm", "hipblaslt", "rocblas", "transformers")

LABELS = {"vllm": "vLLM", "vllm_commit": "vLLM commit", "torch": "torch",
          "torch_hip": "torch HIP", "torch_cuda": "torch CUDA", "triton": "Triton",
          "aiter": "AITER", "rocm": "ROCm", "hipblaslt": "hipBLASLt", "rocblas": "rocBLAS",
          "transformers": "transformers"}
