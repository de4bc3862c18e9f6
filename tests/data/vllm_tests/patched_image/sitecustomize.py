"""A vLLM change carried by an image (test stand-in; see the Dockerfile beside it).

Two differences from the image it is built on, as a ROCm image can differ from a CUDA one:

* vLLM's ``MultiHeadedAttention`` (vllm/model_executor/models/phi4mm_utils.py) keeps its
  attention probabilities again in eager mode (``self.attn``), the memory leak vLLM fixed and
  ``tests/model_executor/test_phi4mm_attention.py::
  test_eager_attention_does_not_retain_probability_matrix`` guards: that node fails here.
* The image carries no ``cryptography`` package: importing it fails, so upstream tests that
  ``pytest.importorskip("cryptography.x509")`` (``tests/entrypoints/launchers/
  test_balanced_accepts.py::test_tls_handshake_failure_keeps_serving``) are skipped here, with
  that reason, and run elsewhere.
"""

import importlib.abc
import importlib.util
import sys

TARGET = "vllm.model_executor.models.phi4mm_utils"
ABSENT = "cryptography"


def _keep_attention(module) -> None:
    attention = module.MultiHeadedAttention
    forward = attention.forward

    def patched(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if not self.use_pt_scaled_dot_product_attention:
            self.attn = out.detach()  # retained between calls, as before vLLM's fix
        return out

    attention.forward = patched


class _Absent(importlib.abc.Loader):
    """Found (``importlib.util.find_spec`` callers such as transformers' availability checks
    keep working), but importing it fails as a missing package does."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r} (not in this image)",
                                  name=module.__name__)


class _ImageDifferences(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == ABSENT or name.startswith(ABSENT + "."):
            return importlib.util.spec_from_loader(name, _Absent())
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _keep_attention(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _ImageDifferences())
