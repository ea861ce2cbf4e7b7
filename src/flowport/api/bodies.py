"""The OpenAPI description of a JSON body that a service parses itself.

Some routes hand their body to a service unparsed, so that the service's
own, more precise messages answer a bad one (import rules, a release
change). :func:`parsed_by_service` states the body's real schema in the
document all the same: a client generated from the document then knows
every key, type and required field the service will hold it to.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

__all__ = ["parsed_by_service"]


def parsed_by_service(body_type: Any) -> dict[str, Any]:
    """``openapi_extra`` giving ``body_type``'s JSON schema (aliases, definitions inlined) as the body's."""
    schema = TypeAdapter(body_type).json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})
    inlined = _inline(schema, definitions)
    return {"requestBody": {"content": {"application/json": {"schema": inlined}}, "required": True}}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            target = definitions[reference.removeprefix("#/$defs/")]
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return _inline({**target, **rest}, definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node
