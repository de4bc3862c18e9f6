"""A tiny HTML template helper that escapes by default.

``html('<td title="{t}">{v}</td>', t=..., v=...)`` escapes every value with ``html.escape`` (quotes
included) unless the value is already ``Markup`` (the output of this helper, or a literal the
caller vouches for with ``Markup(...)``). Results, messages and log lines are untrusted text: the
only way to put them on the page is through here, so forgetting to escape is not possible.
"""

from __future__ import annotations

import html as _stdlib_html
from typing import Any, Iterable
from urllib.parse import quote


class Markup(str):
    """Text that is already safe HTML; never escaped again."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(_stdlib_html.escape("" if value is None else str(value), quote=True))


def _safe(value: Any) -> Any:
    # Numbers cannot hold markup and keep their format specs ({:.1f}); everything else is text.
    if isinstance(value, (Markup, int, float)) and not isinstance(value, bool):
        return value
    return escape(value)


def html(template: str, /, *args: Any, **kwargs: Any) -> Markup:
    """Format ``template`` (a trusted literal) with every substituted value escaped."""
    return Markup(template.format(*map(_safe, args),
                                  **{key: _safe(value) for key, value in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(escape(sep).join(escape(p) for p in parts))


def href(path: str) -> str:
    """A relative file path or URL for an href attribute (escaped again by ``html``)."""
    if "://" in path:
        return path if path.startswith(("http://", "https://")) else "#"
    return quote(path, safe="/._-~#")
