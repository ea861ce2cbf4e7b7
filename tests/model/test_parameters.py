"""Parameters: ${name} references, escapes, values and whole-flow resolution."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flowport.errors import ValidationFailed
from flowport.model.flow import ErrorStageSpec, PluginRef
from flowport.model.parameters import (
    UnresolvedParameters,
    find_references,
    parameter_values,
    resolve_flow,
    substitute,
)


def test_find_references_recurses_into_dicts_and_lists() -> None:
    config = {
        "condition": "total >= ${orders__min_total} and region = '${region}'",
        "fields": [{"name": "${field_1}"}, ["${deep}", 5, None, True]],
        "limit": 10,
    }
    assert find_references(config) == {"orders__min_total", "region", "field_1", "deep"}


def test_escaped_and_malformed_references_are_not_references() -> None:
    assert find_references("$${literal} ${real} ${1digit} ${with-dash} ${ spaced } $plain {brace}") == {
        "real"
    }
    assert find_references(["$${a}", {"k": "$${b}"}]) == set()


def test_non_text_values_have_no_references() -> None:
    assert find_references(42) == set()
    assert find_references(None) == set()
    assert find_references({"${key}": "value"}) == set()  # keys are setting names, not values


def test_substitute_replaces_everywhere() -> None:
    config = {"a": "${x}", "b": ["pre-${x}-${y}-post", {"c": "${y}${y}"}], "n": 3, "flag": False}
    assert substitute(config, {"x": "1", "y": "two"}) == {
        "a": "1",
        "b": ["pre-1-two-post", {"c": "twotwo"}],
        "n": 3,
        "flag": False,
    }


def test_escaped_reference_becomes_literal_even_when_defined() -> None:
    assert substitute("cost: $${x} vs ${x}", {"x": "5"}) == "cost: ${x} vs 5"
    assert substitute({"k": "$${undefined}"}, {}) == {"k": "${undefined}"}


def test_substituted_values_are_not_expanded_again() -> None:
    assert substitute("${a}", {"a": "${b}", "b": "boom"}) == "${b}"


def test_substitute_leaves_keys_and_input_alone() -> None:
    config = {"${k}": ["${v}"]}
    before = copy.deepcopy(config)
    assert substitute(config, {"k": "K", "v": "V"}) == {"${k}": ["V"]}
    assert config == before


def test_unresolved_parameters_are_all_listed() -> None:
    with pytest.raises(UnresolvedParameters) as caught:
        substitute({"a": "${zeta}", "b": ["${alpha}", "${known}", "${alpha}"]}, {"known": "1"})
    err = caught.value
    assert err.names == ["alpha", "zeta"]
    assert "'alpha', 'zeta'" in err.message
    assert err.details == {"missing": ["alpha", "zeta"]}
    assert isinstance(err, ValidationFailed)


def test_one_unresolved_parameter_message_says_how_to_fix() -> None:
    with pytest.raises(
        UnresolvedParameters, match=r"Parameter 'x' is not defined: add it .* --param x=VALUE"
    ):
        substitute("${x}", {})


def test_parameter_values_precedence(make_flow: Any) -> None:
    flow = make_flow([], parameters={"min_total": "100", "orders__region": "flow"}, parameter_sets=["orders"])
    sets = {
        "orders": {"region": "set", "currency": "EUR"},
        "unused": {"secret": "nope"},
    }
    assert parameter_values(flow, sets) == {
        "orders__region": "flow",  # the flow's own value beats the set's
        "orders__currency": "EUR",
        "min_total": "100",
    }
    values = parameter_values(
        flow, sets, overrides={"orders__currency": "USD", "min_total": "5", "extra": "x"}
    )
    assert values == {"orders__region": "flow", "orders__currency": "USD", "min_total": "5", "extra": "x"}


def test_parameter_values_without_sets(make_flow: Any) -> None:
    flow = make_flow([], parameters={"a": "1"}, parameter_sets=["orders"])
    assert parameter_values(flow) == {"a": "1"}
    assert parameter_values(flow, None, None) == {"a": "1"}


def test_resolve_flow_substitutes_every_stage_and_the_error_stage(make_flow: Any) -> None:
    flow = make_flow(
        [("O", "dev_raw", {"text": "${t}"}), ("F", "filter", {"condition": "x > ${n}"})],
        error_stage=ErrorStageSpec(
            plugin=PluginRef(name="write_to_file"), configuration={"directory": "${dir}"}
        ),
    )
    resolved = resolve_flow(flow, {"t": "hello", "n": "3", "dir": "errors/"})
    assert resolved.stages[0].configuration == {"text": "hello"}
    assert resolved.stages[1].configuration == {"condition": "x > 3"}
    assert resolved.error_stage.configuration == {"directory": "errors/"}
    # The original is untouched: resolution is per run.
    assert flow.stages[0].configuration == {"text": "${t}"}
    assert flow.error_stage.configuration == {"directory": "${dir}"}


def test_resolve_flow_lists_every_missing_name_across_stages(make_flow: Any) -> None:
    flow = make_flow(
        [("O", "dev_raw", {"text": "${a}"}), ("F", "filter", {"condition": "${b}"})],
        error_stage=ErrorStageSpec(configuration={"x": "${c}"}),
    )
    with pytest.raises(UnresolvedParameters) as caught:
        resolve_flow(flow, {})
    assert caught.value.names == ["a", "b", "c"]
