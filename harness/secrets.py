"""Secrets are passed by name and never written: redact any that leak into text we keep."""

from __future__ import annotations

import os
import re

from harness.spec.platform import is_secret_name

_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_HF_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, "***")
    return _HF_TOKEN_RE.sub("hf_***", text)


def redact_file(path) -> bool:
    """Rewrite a log in place (atomically) if it holds a secret value. Returns whether it did."""
    from pathlib import Path

    from harness.results import write_atomic

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    cleaned = redact(text)
    if cleaned == text:
        return False
    write_atomic(path, cleaned)
    return True
