"""The bodies of ``/v4/parameterSets``: names and parameter names are what ``${set__parameter}`` can spell."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowport.services.schemas.common import PARAMETER_NAME, ReadModel, Ref, Timestamp, Unset, keys_matching

__all__ = ["ParameterSetCreate", "ParameterSetRead", "ParameterSetUpdate"]

# A set's name: a parameter name without "__" (which separates set and parameter in a reference).
_SET_NAME: dict[str, Any] = {"pattern": PARAMETER_NAME, "not": {"pattern": "__"}}

# Names end up inside ${set__parameter}: they must be what a reference can spell.
_IDENTIFIER = re.compile(PARAMETER_NAME)


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _parameters(value: Any) -> Any:
    # Accepted as {"name": "value"} or, as some clients send them, [{"name": ..., "value": ...}].
    if isinstance(value, list):
        items: dict[str, Any] = {}
        for index, item in enumerate(value):
            if not isinstance(item, Mapping) or "name" not in item or set(item) - {"name", "value"}:
                raise ValueError(f"parameters[{index}] must be an object with 'name' and 'value'")
            items[str(item["name"])] = item.get("value", "")
        value = items
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
                raise ValueError(
                    f"'{key}' is not a parameter name (letters, digits and _, not first a digit)"
                )
        return {key: _text(v) for key, v in value.items()}
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("name", check_fields=False)
    @classmethod
    def _identifier(cls, value: Any) -> Any:
        if isinstance(value, str) and not _IDENTIFIER.fullmatch(value):
            raise ValueError("a parameter set name is letters, digits and _, not starting with a digit")
        if isinstance(value, str) and "__" in value:
            raise ValueError("a parameter set name cannot contain '__' (it separates set and parameter)")
        return value

    @field_validator("parameters", mode="before", check_fields=False)
    @classmethod
    def _check_parameters(cls, value: Any) -> Any:
        return _parameters(value)


class ParameterSetCreate(_Body):
    """The body of ``POST /v4/parameterSets``."""

    name: str = Field(min_length=1, max_length=255, json_schema_extra=_SET_NAME)
    description: str = ""
    parameters: dict[str, str] = Field(default_factory=dict, json_schema_extra=keys_matching(PARAMETER_NAME))


class ParameterSetUpdate(_Body):
    """The body of ``PATCH /v4/parameterSets/{id}``: only the fields given change (parameters as a whole)."""

    name: Annotated[str, Field(min_length=1, max_length=255, json_schema_extra=_SET_NAME)] | Unset = None
    description: str | Unset = None
    parameters: Annotated[dict[str, str], Field(json_schema_extra=keys_matching(PARAMETER_NAME))] | Unset = (
        None
    )


# -- what the services answer --------------------------------------------------------------


class ParameterSetRead(ReadModel):
    """A parameter set: its values as text."""

    id: int
    name: str
    description: str
    parameters: dict[str, str]
    project: Ref | None
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
