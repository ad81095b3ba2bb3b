"""Validation errors in plain words: each names the setting as the user gave it and the rule
it breaks, all on one line (never the value of a secret)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from sidecar.config.settings import Settings

_KINDS = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "tuple_type": "a list",
    "path_type": "a file path",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def describe(exc: ValidationError, name_of: Callable[[str], str]) -> str:
    """One line: each problem names the setting by ``name_of(field)`` and says the rule."""
    return "; ".join(_problem(error, name_of) for error in exc.errors())


def _problem(error: ErrorDetails, name_of: Callable[[str], str]) -> str:
    fields = [part for part in error["loc"] if isinstance(part, str)]
    kind = error["type"]
    if not fields:  # a rule between settings: its message names each as {field}
        message = str(error["msg"]).removeprefix("Value error, ")
        return _PLACEHOLDER.sub(lambda m: _named(m, name_of), message)
    field = fields[0]
    name = name_of(field)
    if kind == "extra_forbidden":
        return f"{name} is not a setting"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"{name} must be {words} {_number(error['ctx'][key])}{_unit(field)}"
    if kind == "literal_error":
        return f"{name} must be {error['ctx']['expected']}"
    if kind in _KINDS:
        each = " (each of them)" if any(isinstance(p, int) for p in error["loc"]) else ""
        return f"{name} must be {_KINDS[kind]}{each}"
    return f"{name}: {str(error['msg']).removeprefix('Value error, ')}"


def _named(match: re.Match[str], name_of: Callable[[str], str]) -> str:
    return name_of(match[1]) if match[1] in Settings.model_fields else match[0]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unit(field: str) -> str:
    extra = Settings.model_fields[field].json_schema_extra
    unit = extra.get("unit") if isinstance(extra, dict) else None
    return f" {unit}" if unit else ""
