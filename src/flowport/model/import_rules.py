"""Import rules: how a package's flows are rewritten while a deployment imports them.

Object rules remap objects by identity: ``{"tableName": "connections",
"onCondition": {"uuid": DEV_UUID}, "withCondition": {"id": PROD_ID}}``
points every stage that used the Dev connection at the Prod connection.
Value rules rewrite values, in order: ``{"type": "fileLocation" |
"s3Bucket" | "tableName" | "parameter", "on": LITERAL or "/REGEX/", "with":
REPLACEMENT}``. A literal replaces every occurrence; a ``/regex/`` is a
Python regular expression whose replacement may use ``\\1`` groups.

Pure functions: rules are applied to flow documents while a package is
imported, never to what is already stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowport.errors import ValidationFailed
from flowport.model.flow import Flow

__all__ = [
    "FILE_LOCATION_KEYS",
    "TABLE_NAME_KEYS",
    "AppliedChange",
    "ObjectImportRule",
    "ValueImportRule",
    "apply_object_rules",
    "apply_value_rules",
]

# Configuration keys each value rule type rewrites.
FILE_LOCATION_KEYS = frozenset({"path", "directory"})
TABLE_NAME_KEYS = frozenset({"table"})
_BUCKET = re.compile(r"^(s3a?|gs)://([^/]+)(/.*)?$")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectImportRule(_Rule):
    """Remap a referenced object (today: connections) by its stable uuid to a local id."""

    table_name: Literal["connections"] = Field(alias="tableName")
    # The validators below hold these to one key each; the schema says so too.
    on_condition: dict[str, str] = Field(
        alias="onCondition",
        json_schema_extra={
            "properties": {"uuid": {"type": "string", "pattern": r"\S"}},
            "required": ["uuid"],
            "additionalProperties": False,
        },
    )
    with_condition: dict[str, int] = Field(
        alias="withCondition",
        json_schema_extra={
            "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 2147483647}},
            "required": ["id"],
            "additionalProperties": False,
        },
    )

    @field_validator("on_condition")
    @classmethod
    def _on_uuid(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != {"uuid"} or not value["uuid"].strip():
            raise ValueError('onCondition must be {"uuid": "<the connection uuid in the package>"}')
        return value

    @field_validator("with_condition")
    @classmethod
    def _with_id(cls, value: dict[str, int]) -> dict[str, int]:
        if set(value) != {"id"}:
            raise ValueError('withCondition must be {"id": <the local connection id>}')
        return value

    def to_dict(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return self.model_dump(by_alias=True)


class ValueImportRule(_Rule):
    """Rewrite values of one kind: literal or /regex/ ``on``, replacement ``with``."""

    type: Literal["fileLocation", "s3Bucket", "tableName", "parameter"]
    on: str = Field(min_length=1)
    with_: str = Field(alias="with")

    @field_validator("on")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        if _is_regex(value):
            try:
                re.compile(value[1:-1])
            except re.error as exc:
                raise ValueError(f"'{value}' is not a valid regular expression: {exc}") from None
        return value

    def to_dict(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return self.model_dump(by_alias=True)

    def rewrite(self, text: str) -> str:
        """``text`` with this rule applied."""
        if _is_regex(self.on):
            return re.sub(self.on[1:-1], self.with_, text)
        return text.replace(self.on, self.with_)


def _is_regex(on: str) -> bool:
    return len(on) >= 2 and on.startswith("/") and on.endswith("/")


@dataclass(frozen=True)
class AppliedChange:
    """One value an import rule changed."""

    rule: int
    flow: str
    stage: str | None
    key: str
    before: str
    after: str

    def to_dict(self) -> dict[str, Any]:
        """The change as the API reports it."""
        return {
            "rule": self.rule,
            "flow": self.flow,
            "stage": self.stage,
            "key": self.key,
            "from": self.before,
            "to": self.after,
        }


def _walk(value: Any, key: str | None, visit: Callable[[str, str], str | None]) -> Any:
    """A copy of ``value`` where every string under a key is passed to ``visit`` (None keeps it)."""
    if isinstance(value, dict):
        return {k: _walk(v, k, visit) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, visit) for v in value]
    if isinstance(value, str) and key is not None:
        changed = visit(key, value)
        return value if changed is None else changed
    return value


def _configs(flow: Flow) -> list[tuple[str | None, dict[str, Any]]]:
    return [(s.name, s.configuration) for s in flow.stages] + [
        (flow.error_stage.name, flow.error_stage.configuration)
    ]


def apply_object_rules(
    flow: Flow, rules: Sequence[ObjectImportRule], local_connections: Mapping[int, str]
) -> tuple[Flow, list[ObjectImportRule]]:
    """Point stages at local connections; returns the new flow and the rules that applied.

    ``local_connections`` maps each local connection id to the reference
    stages should use (its uuid). A rule naming an id this instance does not
    have is a ValidationFailed that says so.
    """
    mapping: dict[str, str] = {}
    for rule in rules:
        local_id = rule.with_condition["id"]
        if local_id not in local_connections:
            raise ValidationFailed(
                f"Object import rule maps connection {rule.on_condition['uuid']} to connection id "
                f"{local_id}, which does not exist on this instance: create the connection or fix the rule"
            )
        mapping[rule.on_condition["uuid"]] = local_connections[local_id]
    used: set[str] = set()

    def visit(key: str, value: str) -> str | None:
        if key == "connection" and value in mapping:
            used.add(value)
            return mapping[value]
        return None

    data = flow.model_dump(mode="json", by_alias=True)
    data["stages"] = [_walk(stage, None, visit) for stage in data["stages"]]
    data["error_stage"] = _walk(data["error_stage"], None, visit)
    applied = [r for r in rules if r.on_condition["uuid"] in used]
    return Flow.model_validate(data), applied


def _bucket_rewrite(rule: ValueImportRule, value: str) -> str:
    match = _BUCKET.match(value)
    if match:
        scheme, bucket, rest = match.group(1), match.group(2), match.group(3) or ""
        return f"{scheme}://{rule.rewrite(bucket)}{rest}"
    return value


def apply_value_rules(flow: Flow, rules: Sequence[ValueImportRule]) -> tuple[Flow, list[AppliedChange]]:
    """Apply value rules in order; returns the new flow and every change made."""
    changes: list[AppliedChange] = []
    data = flow.model_dump(mode="json", by_alias=True)
    for index, rule in enumerate(rules):
        if rule.type == "parameter":
            for name, value in list(data["parameters"].items()):
                new = rule.rewrite(value)
                if new != value:
                    data["parameters"][name] = new
                    changes.append(AppliedChange(index, flow.name, None, f"parameters.{name}", value, new))
            continue

        current: list[str | None] = [None]

        def visit(
            key: str,
            value: str,
            rule: ValueImportRule = rule,
            index: int = index,
            current: list[str | None] = current,
        ) -> str | None:
            rewrites_key = (rule.type == "fileLocation" and key in FILE_LOCATION_KEYS) or (
                rule.type == "tableName" and key in TABLE_NAME_KEYS
            )
            if rewrites_key:
                new = rule.rewrite(value)
            elif rule.type == "s3Bucket" and (key == "bucket" or key in FILE_LOCATION_KEYS):
                new = rule.rewrite(value) if key == "bucket" else _bucket_rewrite(rule, value)
            else:
                return None
            if new == value:
                return None
            changes.append(AppliedChange(index, flow.name, current[0], key, value, new))
            return new

        for stage in data["stages"]:
            current[0] = stage["name"]
            stage["configuration"] = _walk(stage["configuration"], None, visit)
        current[0] = data["error_stage"]["name"]
        data["error_stage"]["configuration"] = _walk(data["error_stage"]["configuration"], None, visit)
    return Flow.model_validate(data), changes
