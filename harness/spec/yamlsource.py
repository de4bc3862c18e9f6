"""Safe YAML loading that remembers where every key and item came from.

Validation errors must name file, line and key path; PyYAML's plain ``safe_load`` forgets
positions, so we compose the node graph (which keeps marks), construct it with the *safe*
constructor only, and keep a map ``key path -> line`` beside the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

KeyPath = tuple[str | int, ...]
# Hostile-input bounds: a case or platforms file is a few KiB. Aliases can make a tiny file
# expand exponentially ("billion laughs"), so expanded nodes are counted, not bytes.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000


class SpecError(Exception):
    """A problem in a YAML input, located at ``file:line`` and a dotted key path."""

    def __init__(self, path: Path | str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = str(path), line, key, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key or '<top>'}: {message}")


@dataclass
class Located:
    """Plain Python data plus the line of every key path in it (1-based)."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, keypath: KeyPath) -> int | None:
        # Fall back to the nearest enclosing key that has a line.
        for cut in range(len(keypath), -1, -1):
            line = self.lines.get(tuple(keypath[:cut]))
            if line is not None:
                return line
        return None

    def error(self, keypath: KeyPath, message: str) -> SpecError:
        return SpecError(self.path, self.line_of(keypath), dotted(keypath), message)


def dotted(keypath: KeyPath) -> str:
    out = ""
    for part in keypath:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml's parser when PyYAML was built with it (10x faster on large case sets); both keep marks.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeySafeLoader(_SafeLoader):
    """The safe loader; duplicate keys are refused in _walk (a silent overwrite hides mistakes)."""


def _walk(node: yaml.Node, keypath: KeyPath, lines: dict[KeyPath, int], path: Path,
          budget: list[int] | None = None) -> None:
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(path, node.start_mark.line + 1, dotted(keypath),
                        f"more than {MAX_NODES} values once aliases are expanded")
    lines.setdefault(keypath, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise SpecError(path, key_node.start_mark.line + 1, dotted(keypath + (key,)),
                                "duplicate key")
            seen.add(key)
            lines[keypath + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, keypath + (key,), lines, path, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[keypath + (index,)] = item.start_mark.line + 1
            _walk(item, keypath + (index,), lines, path, budget)


def load_located(path: Path | str, text: str | None = None) -> Located:
    """Load one YAML document safely. Any non-standard tag (``!!python/object``...) is an error."""
    path = Path(path)
    if text is None:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise SpecError(path, None, "", f"larger than {MAX_FILE_BYTES} bytes")
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise SpecError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SpecError(path, None, "", f"not UTF-8 text (byte {exc.start})") from None
    loader = _UniqueKeySafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(path, None, {})
        lines: dict[KeyPath, int] = {}
        _walk(node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        if "could not determine a constructor" in problem:
            problem = f"tag not allowed (YAML is loaded safely): {problem}"
        raise SpecError(path, line, "", problem) from exc
    except yaml.YAMLError as exc:  # reader errors without marks
        raise SpecError(path, None, "", str(exc).splitlines()[0]) from None
    except RecursionError:
        raise SpecError(path, None, "", "nested too deeply") from None
    finally:
        loader.dispose()
    return Located(path, data, lines)


def validate_model(located: Located, model, extra: dict[str, Any] | None = None,
                   hidden: Callable[[Any], bool] = lambda part: False):
    """Validate YAML data against a pydantic model; the first error is raised as a SpecError
    at file:line: key (``hidden``: location parts that are not keys, e.g. union tags)."""
    from pydantic import ValidationError

    data = located.data
    if not isinstance(data, dict):
        raise located.error((), "expected a mapping at the top level")
    try:
        return model.model_validate({**data, **(extra or {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        keypath = tuple(part for part in first["loc"] if not hidden(part))
        message = _pydantic_message(first)
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more error{'s' if more > 1 else ''})"
        raise located.error(keypath, message) from None


def _pydantic_message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return error["msg"]
