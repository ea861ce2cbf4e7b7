"""What the API's bodies may hold, stated so that the OpenAPI document says it too.

The services keep their own checks (with their own, more helpful
messages); the types here make the document state the same rules, so that
a client built from the document never sends what the server will refuse
(schemathesis' ST202). Each pattern is the one the service checks with.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

__all__ = ["NOT_BLANK", "NO_NUL", "PARAMETER_NAME", "Name", "Unset", "keys_matching"]

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
