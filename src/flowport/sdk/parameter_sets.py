"""Parameter sets: named groups of parameters a flow refers to as ``${set__param}``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flowport.sdk._listing import Listing

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["ParameterSet", "ParameterSetList", "parameters_dict"]


def parameters_dict(parameters: Mapping[str, Any] | Iterable[Any]) -> dict[str, Any]:
    """Parameters as ``{name: value}``, from a dict or from pairs / ``{"key"|"name", "value"}`` items."""
    if isinstance(parameters, Mapping):
        return dict(parameters)
    result: dict[str, Any] = {}
    for item in parameters:
        if isinstance(item, Mapping):
            key = item.get("key", item.get("name"))
            if key is None or "value" not in item:
                raise ValueError(f"A parameter must have a key (or name) and a value, got {dict(item)!r}")
            result[str(key)] = item["value"]
        elif isinstance(item, tuple | list) and len(item) == 2:
            result[str(item[0])] = item[1]
        else:
            raise ValueError(f"A parameter is a (key, value) pair or {{'key', 'value'}}, got {item!r}")
    return result


class ParameterSet:
    """A parameter set of a project: ``name``, ``parameters`` (``{name: value}``) and ``description``."""

    def __init__(self, client: Client, record: Mapping[str, Any]) -> None:
        self._client = client
        self._record = dict(record)

    def __repr__(self) -> str:
        return (
            f"ParameterSet(name={self.name!r}, parameters={self.parameters!r}, "
            f"description={self.description!r}, value_sets={self.value_sets!r})"
        )

    @property
    def value_sets(self) -> list[dict[str, Any]]:
        """Alternative value sets of the seed's parameter sets; Flowport's sets have one set of values."""
        return list(self._record.get("valueSets") or [])

    @property
    def parameter_set_id(self) -> int:
        """The parameter set's id on the server."""
        return int(self._record["id"])

    @property
    def name(self) -> str:
        """The set's name; flows refer to its parameters as ``${<name>__<parameter>}``."""
        return str(self._record["name"])

    @property
    def description(self) -> str:
        """What the set is for."""
        return str(self._record.get("description") or "")

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters and their values."""
        return dict(self._record.get("parameters") or {})

    @property
    def project_id(self) -> int | None:
        """The project the set belongs to."""
        project = self._record.get("project")
        value = project.get("id") if isinstance(project, Mapping) else self._record.get("projectId")
        return int(value) if value is not None else None

    def references(self) -> dict[str, str]:
        """How a stage configuration refers to each parameter: ``{param: '${set__param}'}``."""
        return {key: "${" + f"{self.name}__{key}" + "}" for key in self.parameters}


class ParameterSetList(Listing[ParameterSet]):
    """The parameter sets of a project; ``get(name=...)`` picks one."""

    _what = "parameter set"
