"""Flow parameters: ``${name}`` references in stage configurations.

A reference is ``${name}`` where ``name`` is made of ASCII letters, digits
and underscores and does not start with a digit. A parameter of a parameter
set is named ``<set>__<parameter>`` (double underscore), e.g.
``${orders__min_total}``. ``$${name}`` is an escaped reference: it stays
in the configuration as the literal text ``${name}``.

Substitution works on strings inside dicts and lists, recursively; dict
keys are left alone (they are setting names from the plugin's schema, not
user values). A substituted value is inserted as is and never scanned
again, so a parameter value that itself contains ``${...}`` cannot expand
into other parameters. Values are always text: a stage's configuration
model converts ``"100"`` to the number it expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowport.errors import UnknownParameters, UnresolvedParameters
from flowport.model.flow import Flow

__all__ = [
    "REFERENCE",
    "UnknownParameters",
    "UnresolvedParameters",
    "check_override_names",
    "find_references",
    "known_parameters",
    "parameter_values",
    "resolve_flow",
    "substitute",
]

# Group 1 is the escaping second '$'; group 2 the name.
REFERENCE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def known_parameters(flow: Flow, parameter_sets: Mapping[str, Mapping[str, str]] | None = None) -> set[str]:
    """Every name a run-time override may set: the flow's parameters, those of the parameter sets
    it uses (``set__param``) and every ``${name}`` its stages refer to."""
    names = set(flow.parameters)
    for set_name in flow.parameter_sets:
        names.update(f"{set_name}__{param}" for param in (parameter_sets or {}).get(set_name, {}))
    for stage in flow.stages:
        names |= find_references(stage.configuration)
    names |= find_references(flow.error_stage.configuration)
    return names


def check_override_names(
    flow: Flow,
    overrides: Mapping[str, str] | None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """UnknownParameters unless every override names a parameter the flow has or refers to."""
    if not overrides:
        return
    known = known_parameters(flow, parameter_sets)
    unknown = [name for name in overrides if name not in known]
    if unknown:
        raise UnknownParameters(unknown, sorted(known))


def _references_in_text(text: str) -> set[str]:
    return {m.group(2) for m in REFERENCE.finditer(text) if m.group(1) is None}


def find_references(value: Any) -> set[str]:
    """Names of every parameter referenced in ``value`` (strings inside dicts and lists).

    Escaped references (``$${name}``) are not references.
    """
    if isinstance(value, str):
        return _references_in_text(value)
    if isinstance(value, Mapping):
        return set().union(*(find_references(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(find_references(v) for v in value))
    return set()


def _substitute(value: Any, values: Mapping[str, str], missing: set[str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(2)
            if match.group(1) is not None:
                return "${" + name + "}"
            if name in values:
                return values[name]
            missing.add(name)
            return match.group(0)

        return REFERENCE.sub(replace, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, values, missing) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, values, missing) for v in value]
    return value


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """A copy of ``value`` with every ``${name}`` replaced by ``values[name]``.

    Escaped references become literal ``${name}``. Non-string scalars are
    returned unchanged.

    Raises:
        UnresolvedParameters: some references have no value; lists them all.
    """
    missing: set[str] = set()
    result = _substitute(value, values, missing)
    if missing:
        raise UnresolvedParameters(missing)
    return result


def parameter_values(
    flow: Flow,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The value of every parameter the flow can refer to.

    ``parameter_sets`` maps a set name to its parameters; only the sets the
    flow uses (``flow.parameter_sets``) contribute, as ``<set>__<param>``.
    On a clash the most specific source wins: ``overrides`` (given for one
    run), then the flow's own ``parameters``, then parameter set values.
    """
    values: dict[str, str] = {}
    for set_name in flow.parameter_sets:
        for param, value in (parameter_sets or {}).get(set_name, {}).items():
            values[f"{set_name}__{param}"] = value
    values.update(flow.parameters)
    values.update(overrides or {})
    return values


def resolve_flow(flow: Flow, values: Mapping[str, str]) -> Flow:
    """A deep copy of ``flow`` with every stage's and the error stage's configuration substituted.

    Raises:
        UnresolvedParameters: listing every missing name across all stages.
    """
    resolved = flow.model_copy(deep=True)
    missing: set[str] = set()
    for stage in resolved.stages:
        stage.configuration = _substitute(stage.configuration, values, missing)
    resolved.error_stage.configuration = _substitute(resolved.error_stage.configuration, values, missing)
    if missing:
        raise UnresolvedParameters(missing)
    return resolved
