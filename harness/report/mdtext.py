"""Markdown text pieces: escaping, code spans and blocks, links. Below every report that writes
Markdown (the annotation, the bisect report, the failure-signature table)."""

from __future__ import annotations

import re
from urllib.parse import quote

from harness.compare.explain import strip_ansi

# Markdown punctuation backslash-escaped, and HTML's three: one character at a time, in one pass
# (a report of 5,000 cases escapes tens of thousands of strings).
_ESCAPED = str.maketrans({**{c: "\\" + c for c in "\\`*_[]|#!~{}()+"},
                          "&": "&amp;", "<": "&lt;", ">": "&gt;"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def escape(text: str) -> str:
    """Inline text: no HTML, no Markdown structure, one line."""
    return _CONTROL.sub("", re.sub(r"\s+", " ", strip_ansi(str(text)))).translate(_ESCAPED)


def code_span(text: str) -> str:
    text = " ".join(str(text).splitlines())
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str, info: str = "text") -> str:
    text = _CONTROL.sub("", strip_ansi(text))  # terminal colours are noise on a web page
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def link(label: str, url: str) -> str:
    return f"[{escape(label)}]({quote(url, safe=':/#?=&~.-_')})"


def safe_link(url: str) -> str:
    """A link taken from a result: only web links become links (no ``javascript:``)."""
    if re.match(r"https?://", url):
        return link(url, url)
    return escape(url)
