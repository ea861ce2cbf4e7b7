"""The types every body shares, stated so that the OpenAPI document says them too.

The services keep their own checks (with their own, more helpful
messages); the types here make the document state the same rules, so that
a client built from the document never sends what the server will refuse
(schemathesis' ST202). Each pattern is the one the service checks with.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from flowport.errors import ValidationFailed
from flowport.model.document import describe_validation_error

__all__ = [
    "MAX_ID",
    "NOT_BLANK",
    "NO_NUL",
    "PARAMETER_NAME",
    "Name",
    "Page",
    "ReadModel",
    "Ref",
    "Timestamp",
    "Unset",
    "keys_matching",
    "parse_body",
]

_M = TypeVar("_M", bound=BaseModel)

# Ids are 32-bit integer columns.
MAX_ID: Final = 2**31 - 1

# A field of a partial update that may be left out but not sent as null:
# ``X | Unset = None`` parses an absent field as None, and the document shows
# only ``X`` (the services refuse an explicit null with a message).
Unset = SkipJsonSchema[None]

# A parameter name: letters, digits and _, not first a digit.
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Text that is not only blanks (a name is stripped before its length is checked).
NOT_BLANK = r"\S"

# A name: 1 to 255 characters once stripped of surrounding blanks.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    Field(json_schema_extra={"pattern": NOT_BLANK}),
]

# No text the API takes may hold a NUL character (PostgreSQL cannot store one).
NO_NUL = r"^[^\x00]*$"


def keys_matching(pattern: str, max_length: int = 255) -> dict[str, Any]:
    """``json_schema_extra`` for an object whose keys must match ``pattern``."""
    return {"propertyNames": {"pattern": pattern, "maxLength": max_length}}


def parse_body(model: type[_M], body: Any, what: str) -> _M:
    """``body`` as ``model`` (as is when it already is one); ValidationFailed lists every problem with where
    it is: ``Invalid <what>: name: Field required; ...``."""
    if isinstance(body, model):
        return body
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
    # Raised outside the except block: the pydantic error, which may quote the input, is not kept.
    raise ValidationFailed(f"Invalid {what}: " + "; ".join(lines), details=lines)


# -- what services answer ----------------------------------------------------------------

#: A time as the API writes it: ISO 8601 in UTC with milliseconds and ``Z`` (or null).
Timestamp = str | None


class ReadModel(BaseModel):
    """An object as the services answer it, in the v4 shape (camelCase on the wire, snake_case here).

    :meth:`shape` is how a service builds its answer: the dict it wrote is checked against the model
    (an unknown key or a wrong type is a bug, found by every test that reaches it) and comes back as
    written; optional parts it left out stay out.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    @classmethod
    def shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` checked against this model, as the API answers it."""
        return cls.model_validate(data).model_dump(by_alias=True, exclude_unset=True, mode="json")


class Ref(ReadModel):
    """A reference to another object: ``{"id": 2}``."""

    id: int


_T = TypeVar("_T")


class Page(ReadModel, Generic[_T]):
    """One page of a list: ``{"data": [...], "count": N}`` (``count``: all of them, not only this page)."""

    data: list[_T]
    count: int
