"""The one reader of result files for `harness compare` and `harness ingest` (and so for the
dashboard, which shows what ingest stored): a result decoded and validated in one step, into a
view that keeps what those readers use.

Why not pydantic's ``Result.model_validate_json``: a result holds hundreds of top-k logprobs, and
building them as pydantic objects was most of comparing 10,000 results; msgspec decodes the same
file into slotted Structs the cycle collector does not track, about 2.5 times faster
(benchmarks/bench_compare.py: 10,000 results compared in 1.5 s instead of 3.7 s).

The view's Structs are derived from the pydantic models of ``harness.results`` when this module
is imported, field for field (name, type, default, unknown keys refused), so the two schemas
cannot drift; a model feature the derivation cannot mirror (a validator, an alias) stops the
import. ``harness.results.Result`` stays the authority: msgspec is stricter than pydantic's lax
mode (no ``"1"`` for 1, no ``1.0`` for an int, no NaN), and a file it refuses goes to pydantic,
which either takes it (converted to the view: slow, and only for such files) or says what is
wrong in the words of ``harness.results.read_result``.

A view has the model's field names and nothing else, so what takes a ``Result`` to read it
(``harness.results.status_label``, ``harness.compare.verdicts.outcome_of``,
``harness.history.rows.result_row``, the reports) takes a view alike.

What no reader of the view uses is emptied as each file is read: ``traces`` and every check's
``evidence`` (validated all the same), so that ten thousand results do not hold them in memory
at once.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.results import Result, parse_result, read_result_bytes


def _fields_of(model: type) -> dict[str, Any]:
    """The pydantic fields of a model or a pydantic dataclass."""
    return model.__pydantic_fields__  # type: ignore[attr-defined]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "__pydantic_fields__")


def _mirror_type(annotation: Any) -> Any:
    """The msgspec type for a field annotation: models become their Structs, the rest (str,
    int, float, bool, Literal, Any, None) decodes the same in both libraries."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_mirror_type(a) for a in args)]
    if origin is list:
        return list[_mirror_type(args[0])]
    if origin is dict:
        return dict[_mirror_type(args[0]), _mirror_type(args[1])]
    if _is_model(annotation):
        return view_of(annotation)
    return annotation


_VIEWS: dict[type, type[msgspec.Struct]] = {}


def view_of(model: type) -> type[msgspec.Struct]:
    """The Struct mirroring a pydantic model (or pydantic dataclass), made once."""
    if model in _VIEWS:
        return _VIEWS[model]
    decorators = getattr(model, "__pydantic_decorators__", None)
    if decorators is not None and any(getattr(decorators, kind) for kind in (
            "validators", "field_validators", "root_validators", "model_validators")):
        raise TypeError(f"{model.__name__} has validators: the view cannot mirror them")
    fields = []
    for name, info in _fields_of(model).items():
        if info.alias not in (None, name) or info.validation_alias not in (None, name):
            raise TypeError(f"{model.__name__}.{name} has an alias: the view cannot mirror it")
        kind = _mirror_type(info.annotation)
        if info.default_factory is not None:
            fields.append((name, kind, msgspec.field(default_factory=info.default_factory)))
        elif info.default is PydanticUndefined:
            fields.append((name, kind))
        elif isinstance(info.default, BaseModel):  # a nested model's default, e.g. Expect()
            plain = info.default.model_dump()
            fields.append((name, kind, msgspec.field(
                default_factory=lambda plain=plain, kind=kind: msgspec.convert(plain, kind))))
        else:  # immutable, or an empty list/dict (msgspec copies those per instance)
            fields.append((name, kind, info.default))
    # gc=False: a result is an acyclic tree, so its thousands of Structs need not be tracked by
    # the cycle collector (harness.results.cycle_collection_paused says what that costs).
    view = msgspec.defstruct(f"{model.__name__}View", fields, module=__name__, kw_only=True,
                             forbid_unknown_fields=True, gc=False)
    _VIEWS[model] = view
    return view


ResultView = view_of(Result)
_DECODER = msgspec.json.Decoder(ResultView)


def decode_result_view(raw: bytes, path: Path | str) -> ResultView:
    """The view of a result file's bytes (``path`` names the file in errors)."""
    try:
        view = _DECODER.decode(raw)
    except msgspec.DecodeError:  # corrupt JSON, or a value the schema refuses (a subclass)
        view = _through_pydantic(raw, Path(path))
    # Compare and its reports, ingest and the history never read these.
    view.traces = {}
    for check in view.checks:
        check.evidence = {}
    return view


def read_result_view(path: Path | str) -> ResultView:
    """The view of the result file at ``path``; a file that is missing, unreadable or not a
    valid result raises ``ResultFileError`` naming it."""
    return decode_result_view(read_result_bytes(Path(path)), path)


def _through_pydantic(raw: bytes, path: Path) -> ResultView:
    """A file msgspec refused: pydantic, the authority, takes it or says what is wrong."""
    return msgspec.convert(parse_result(raw, path).model_dump(), ResultView)
