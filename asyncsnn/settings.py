"""Typed settings: the base of every configuration section (pydantic models), the one way a
validation failure becomes a :class:`~asyncsnn.errors.ConfigError` naming the key, and the
listing of every key with its default and meaning (``--print-config``).

A section refuses unknown keys and values of the wrong type or out of range; the message
names the key as a user writes it (``train.lr``, ``model.hidden[0]``,
``experiment.datasets[1].dt``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from .extras import require

require("pydantic", "train", "asyncsnn's typed configuration")

from pydantic import BaseModel, ConfigDict, ValidationError  # noqa: E402

from .errors import ConfigError, InputError  # noqa: E402


class Section(BaseModel):
    """A configuration section: unknown keys are errors, and so is an assignment of a bad
    value."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def key_of(loc: Iterable[Any], prefix: str = "") -> str:
    """``("datasets", 1, "dt")`` -> ``prefix.datasets[1].dt``."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict, model: Optional[type[BaseModel]]) -> str:
    """One line for one pydantic error, in the project's words."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields)) if model is not None else ""
        return "unknown setting" + (f"; allowed: {allowed}" if allowed else "")
    if kind == "literal_error":
        names = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{value!r}; allowed: {', '.join(names)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{value!r}; allowed: true, false"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{value!r} must be {bounds[kind]} {limit}"
    if kind == "missing":
        return "missing (required)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{value!r}: {err['msg'][0].lower()}{err['msg'][1:]}"


def _model_at(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """The section model whose keys ``loc`` (minus its last part) leads to."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = _section_type(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _section_type(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """``model(**data)``; a failure is a :class:`ConfigError` naming the first bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        raise ConfigError(f"invalid config: {key_of(loc, prefix)}: {_describe(err, _model_at(model, loc))}") from None


def run_option(name: str, value: Any) -> Any:
    """``value`` of the run option ``name`` as :class:`~asyncsnn.options.RunOptions` takes it
    (its one parser and check; a bad value is a ``ValueError`` for the section to report)."""
    from .options import RunOptions

    try:
        return getattr(RunOptions(**{name: value}), name)
    except InputError as e:
        raise ValueError(e.detail) from None  # type: ignore[attr-defined]


def listing(model: type[BaseModel], title: str) -> list[str]:
    """Every key of ``model`` under ``[title]`` with its default and meaning, TOML-style."""
    import json

    from .options import f_label

    lines = [f"[{title}]"]
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            continue
        if name == "F":  # (release limits: "inf" is how a file says "no limit")
            default = [f_label(v) for v in default] if isinstance(default, list) else f_label(default)
        shown = "null" if default is None else json.dumps(default)
        lines.append(f"{name} = {shown}".ljust(34) + (f"  # {field.description}" if field.description else ""))
    return lines


__all__ = ["Section", "key_of", "listing", "run_option", "validate"]
