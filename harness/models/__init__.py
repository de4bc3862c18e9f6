"""Deterministic, offline builders for tiny multimodal models used by the harness.

    from harness.models import build_model
    model_dir = build_model("qwen2_5_vl_tiny", cache_root)

Recipes:
  - ``qwen2_5_vl_tiny``: Qwen2.5-VL (vLLM ``Qwen2_5_VLForConditionalGeneration``; also loads in
    transformers with ``Qwen2_5_VLForConditionalGeneration`` + ``AutoProcessor``). ~5.5 MB.
  - ``phi4mm_tiny``: Phi-4-multimodal (vLLM ``Phi4MMForCausalLM``), with its remote-code config and
    processor written into the directory: serve with ``trust_remote_code``. ~180 MB (the
    200064-token embedding and one SigLIP-so400m layer, fixed by vLLM's code).

A model directory is cached as ``<cache_root>/<recipe>-<digest[:16]>/``; the digest covers the
recipe's parameters and the builder's source, so a changed recipe or builder gives a new directory.
Builds go to a temporary directory in ``cache_root`` that is renamed into place when complete, so
concurrent builders never see a half-written directory. This module imports without torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping

__all__ = ["RECIPES", "Recipe", "build_model", "recipe_digest", "default_cache_root", "RECIPE_FILE"]

RECIPE_FILE = "harness-recipe.json"
_HERE = pathlib.Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named model recipe: a builder family plus its JSON-serialisable parameters."""

    name: str
    family: str  # "qwen2_5_vl" | "phi4mm"
    params: Mapping[str, Any]
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "params": _plain(self.params)}


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _families() -> dict[str, tuple[Callable[[], Any], tuple[str, ...]]]:
    """family -> (lazy module loader, source files that define the built output)."""
    from importlib import import_module

    return {
        "qwen2_5_vl": (
            lambda: import_module(".qwen2_5_vl", __name__),
            ("qwen2_5_vl.py", "_tokenizer.py", "_weights.py"),
        ),
        "phi4mm": (
            lambda: import_module(".phi4mm", __name__),
            (
                "phi4mm.py",
                "phi4mm_lora.py",
                "_tokenizer.py",
                "_weights.py",
                "phi4mm_remote/configuration_phi4mm.py",
                "phi4mm_remote/processing_phi4mm.py",
            ),
        ),
    }


def _default_params(family: str) -> dict[str, Any]:
    # The defaults live next to each builder; read them without importing torch.
    loader, _ = _families()[family]
    return json.loads(json.dumps(loader().DEFAULT_PARAMS))


RECIPES: dict[str, Recipe] = {
    "qwen2_5_vl_tiny": Recipe(
        "qwen2_5_vl_tiny",
        "qwen2_5_vl",
        _default_params("qwen2_5_vl"),
        "Qwen2.5-VL, text 128x2 layers, ViT 128x2 layers, fp32, ~1.4M params",
    ),
    "phi4mm_tiny": Recipe(
        "phi4mm_tiny",
        "phi4mm",
        _default_params("phi4mm"),
        "Phi-4-multimodal, text 128x2 layers, 1 SigLIP-so400m layer, dynamic_hd 2, fp32, trust_remote_code",
    ),
}


def _resolve(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise KeyError(f"unknown model recipe {recipe!r}; known: {sorted(RECIPES)}") from None


def builder_source_digest(family: str) -> str:
    """sha256 over the builder source files of a family (line endings normalised)."""
    _, files = _families()[family]
    h = hashlib.sha256()
    for rel in files:
        data = (_HERE / rel).read_bytes().replace(b"\r\n", b"\n")
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
    return h.hexdigest()


def recipe_digest(recipe: str | Recipe) -> str:
    """sha256 (hex) of the recipe's family + parameters + builder source version."""
    r = _resolve(recipe)
    payload = json.dumps(
        {"family": r.family, "params": _plain(r.params), "builder": builder_source_digest(r.family)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def default_cache_root(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """$HARNESS_MODEL_CACHE or ~/.cache/vllm-harness/models: shared by run, reference, launcher."""
    env = (os.environ if environ is None else environ).get("HARNESS_MODEL_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/vllm-harness/models").expanduser()


def model_dir_for(recipe: str | Recipe, cache_root: pathlib.Path) -> pathlib.Path:
    r = _resolve(recipe)
    return pathlib.Path(cache_root) / f"{r.name}-{recipe_digest(r)[:16]}"


def _is_complete(d: pathlib.Path, digest: str) -> bool:
    try:
        meta = json.loads((d / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("digest") == digest


@contextlib.contextmanager
def _lock(path: pathlib.Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX flock); a no-op where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _make_readable(root: pathlib.Path) -> None:
    # mkdtemp makes 0700 dirs and safetensors writes 0600 files: containers running as another
    # user must be able to read a bind-mounted cache.
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def build_model(recipe: str | Recipe, cache_root: pathlib.Path) -> pathlib.Path:
    """Build (or reuse) the model dir for a recipe; returns the directory.

    Cached under cache_root/<recipe>-<hash[:16]>/ where hash = recipe_digest(recipe). Built into a
    temporary directory in cache_root, then renamed into place. The directory holds
    `harness-recipe.json` with the recipe parameters and the digest.
    """
    r = _resolve(recipe)
    cache_root = pathlib.Path(cache_root).expanduser()
    cache_root.mkdir(parents=True, exist_ok=True)
    digest = recipe_digest(r)
    final = model_dir_for(r, cache_root)
    if _is_complete(final, digest):
        return final
    with _lock(cache_root / f".{final.name}.lock"):
        if _is_complete(final, digest):
            return final
        if final.exists():  # left by something else (no recipe file): replace it
            shutil.rmtree(final)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=cache_root))
        try:
            loader, _ = _families()[r.family]
            loader().build(tmp, _plain(r.params))
            meta = {
                "recipe": r.name,
                "family": r.family,
                "params": _plain(r.params),
                "digest": digest,
                "builder_source_digest": builder_source_digest(r.family),
                "built_with": _versions(),
            }
            (tmp / RECIPE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            _make_readable(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not _is_complete(final, digest):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another builder won the race
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
