"""Flow documents as text: JSON and YAML in, JSON and YAML out.

Pure functions over strings; reading and writing files belongs to the
service layer. Errors name the place in the document and what to fix.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from flowport.errors import FlowDocumentError, ValidationFailed
from flowport.model.flow import Flow

__all__ = [
    "describe_validation_error",
    "document_from_text",
    "flow_from_dict",
    "flow_from_text",
    "flow_json_schema",
    "flow_to_dict",
    "flow_to_json",
    "flow_to_yaml",
]


def describe_validation_error(error: ValidationError, *, prefix: str = "") -> list[str]:
    """Turn a pydantic error into lines such as ``stages[1].plugin.name: Field required``."""
    lines = []
    for item in error.errors():
        where = prefix
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        lines.append(f"{where or '(document)'}: {message}")
    return lines


def flow_from_dict(data: Any, *, source: str = "flow") -> Flow:
    """Build a flow from parsed JSON/YAML; FlowDocumentError lists every problem."""
    if not isinstance(data, dict):
        raise FlowDocumentError(
            f"{source}: a flow document must be a JSON/YAML object, got {type(data).__name__}"
        )
    fmt = data.get("format", "flowport.flow/1")
    if fmt != "flowport.flow/1":
        raise FlowDocumentError(
            f"{source}: unsupported flow format '{fmt}'; this Flowport reads 'flowport.flow/1'"
        )
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
        raise FlowDocumentError(
            f"{source}: invalid flow document:\n  " + "\n  ".join(lines), details=lines
        ) from None


def document_from_text(text: str, *, source: str, error: type[ValidationFailed]) -> Any:
    """Parse a JSON or YAML document (JSON is valid YAML, but JSON errors read better); ``error`` says
    where the text is wrong (line, column) when it does not parse."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(
                f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    import yaml  # only for YAML documents: its import takes ~10 ms of every command's start

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}: not valid YAML{where}: {problem}") from None


def flow_from_text(text: str, *, source: str = "flow") -> Flow:
    """Parse a JSON or YAML flow document."""
    return flow_from_dict(document_from_text(text, source=source, error=FlowDocumentError), source=source)


def flow_to_dict(flow: Flow) -> dict[str, Any]:
    """The flow as plain JSON-compatible data."""
    data = flow.model_dump(mode="json", by_alias=True, exclude_none=True)
    # exclude_none is meant for the document's optional fields; an explicit
    # null inside a stage configuration is the user's value and must survive.
    for stage_data, stage in zip(data["stages"], flow.stages, strict=True):
        stage_data["configuration"] = to_jsonable_python(stage.configuration)
    data["error_stage"]["configuration"] = to_jsonable_python(flow.error_stage.configuration)
    for key, value in (flow.configuration.model_extra or {}).items():
        data["configuration"][key] = to_jsonable_python(value)
    return data


def flow_to_json(flow: Flow) -> str:
    """The flow as indented JSON text."""
    return json.dumps(flow_to_dict(flow), indent=2) + "\n"


def flow_to_yaml(flow: Flow) -> str:
    """The flow as YAML text."""
    import yaml

    return yaml.safe_dump(flow_to_dict(flow), sort_keys=False, allow_unicode=True)


def flow_json_schema() -> dict[str, Any]:
    """The JSON Schema of the flow document."""
    schema = Flow.model_json_schema(by_alias=True)
    schema["$id"] = "https://flowport.dev/schemas/flowport.flow-1.json"
    schema["title"] = "Flowport flow (flowport.flow/1)"
    return schema
