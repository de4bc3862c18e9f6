"""Deterministic, name-seeded weight initialisation (torch imported inside functions).

Every tensor is drawn from its own generator seeded by sha256(seed, tensor name), so the result does
not depend on module construction order, the number of threads or the library's own init code.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable


def _generator(seed: int, name: str):
    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    g = torch.Generator(device="cpu")
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def normal(seed: int, name: str, shape: Iterable[int], std: float):
    import torch

    shape = tuple(int(s) for s in shape)
    return (torch.randn(shape, generator=_generator(seed, name), dtype=torch.float32) * std).contiguous()


def fan_in_std(shape: Iterable[int], lo: float = 0.02, hi: float = 0.1) -> float:
    """std = 1/sqrt(fan_in), clamped to [lo, hi] (keeps activations O(1) in tiny models)."""
    shape = tuple(shape)
    fan_in = 1
    for s in shape[1:]:
        fan_in *= int(s)
    return min(hi, max(lo, 1.0 / math.sqrt(max(fan_in, 1))))


def init_module_(module, seed: int, embedding_std: float = 0.1) -> None:
    """Re-initialise every parameter of a torch module in place, deterministically.

    Norm weights -> 1, norm biases and other biases -> 0, embeddings -> N(0, embedding_std),
    other weights -> N(0, fan_in_std).
    """
    import torch

    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            cls = type(mod).__name__
            for p_name, p in mod.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                if "Norm" in cls:
                    p.fill_(1.0 if p_name == "weight" else 0.0)
                elif p_name == "bias" or p_name.endswith("_bias"):
                    p.zero_()
                elif isinstance(mod, torch.nn.Embedding):
                    p.copy_(normal(seed, full, p.shape, embedding_std))
                else:
                    p.copy_(normal(seed, full, p.shape, fan_in_std(p.shape)))


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
