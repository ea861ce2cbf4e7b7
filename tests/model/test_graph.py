"""The flow graph: stable topological order, cycles, reachability."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.errors import ValidationFailed
from flowport.model.graph import find_cycles, format_cycle, reachable_from_origins, topological_order


def names(*items: str) -> list[tuple[str, str]]:
    return [(n, "filter") for n in items]


def test_order_follows_edges_not_listing(make_flow: Any) -> None:
    flow = make_flow(names("D", "P", "O"), [("O", "P"), ("P", "D")])
    assert topological_order(flow) == ["O", "P", "D"]


def test_ready_stages_keep_list_order(make_flow: Any) -> None:
    flow = make_flow(names("O", "B", "A", "D"), [("O", "A"), ("O", "B"), ("A", "D"), ("B", "D")])
    assert topological_order(flow) == ["O", "B", "A", "D"]
    flow = make_flow(names("O1", "O2", "P", "D"), [("O2", "P"), ("O1", "P"), ("P", "D")])
    assert topological_order(flow) == ["O1", "O2", "P", "D"]


def test_a_later_listed_stage_waits_only_for_its_inputs(make_flow: Any) -> None:
    # X is ready at once; it must not be pushed after the whole O→A→B chain.
    flow = make_flow(names("O", "A", "B", "X"), [("O", "A"), ("A", "B")])
    assert topological_order(flow) == ["O", "A", "B", "X"]
    flow = make_flow(names("A", "B", "O", "X"), [("O", "A"), ("A", "B")])
    assert topological_order(flow) == ["O", "A", "B", "X"]


def test_unknown_edge_ends_and_duplicate_edges_are_ignored(make_flow: Any) -> None:
    flow = make_flow(names("O", "P"), [("O", "P"), ("O", "P"), ("Ghost", "P"), ("P", "Nowhere")])
    assert topological_order(flow) == ["O", "P"]


def test_duplicate_stage_names_count_once(make_flow: Any) -> None:
    flow = make_flow(names("O", "P", "O"), [("O", "P")])
    assert topological_order(flow) == ["O", "P"]


def test_cycle_raises_naming_its_stages(make_flow: Any) -> None:
    flow = make_flow(names("O", "A", "B", "D"), [("O", "A"), ("A", "B"), ("B", "A"), ("B", "D")])
    with pytest.raises(ValidationFailed, match="A → B → A") as caught:
        topological_order(flow)
    assert caught.value.details == [["A", "B"]]


def test_find_cycles_empty_for_a_dag(make_flow: Any) -> None:
    flow = make_flow(names("O", "A", "B"), [("O", "A"), ("O", "B"), ("A", "B")])
    assert find_cycles(flow) == []


def test_self_loop_is_a_cycle_of_one(make_flow: Any) -> None:
    flow = make_flow(names("O", "A"), [("O", "A"), ("A", "A")])
    assert find_cycles(flow) == [["A"]]
    with pytest.raises(ValidationFailed, match="A → A"):
        topological_order(flow)


def test_each_cycle_group_reported_in_list_order(make_flow: Any) -> None:
    flow = make_flow(
        names("O", "C", "D", "A", "B"),
        [("O", "A"), ("A", "B"), ("B", "A"), ("O", "C"), ("C", "D"), ("D", "C")],
    )
    assert find_cycles(flow) == [["C", "D"], ["A", "B"]]


def test_self_loop_does_not_hide_a_longer_cycle(make_flow: Any) -> None:
    flow = make_flow(names("A", "B"), [("A", "A"), ("A", "B"), ("B", "A")])
    assert find_cycles(flow) == [["A"], ["A", "B"]]


def test_cycle_is_the_shortest_through_the_first_listed_stage(make_flow: Any) -> None:
    flow = make_flow(names("X", "A", "B", "C"), [("A", "B"), ("B", "C"), ("C", "A"), ("A", "C"), ("X", "A")])
    assert find_cycles(flow) == [["A", "C"]]


def test_long_cycle_does_not_hit_the_recursion_limit(make_flow: Any) -> None:
    count = 3000
    stage_names = [f"S{i}" for i in range(count)]
    edges = [(stage_names[i], stage_names[(i + 1) % count]) for i in range(count)]
    flow = make_flow(names(*stage_names), edges)
    assert find_cycles(flow) == [stage_names]


def test_format_cycle() -> None:
    assert format_cycle(["A", "B", "C"]) == "A → B → C → A"
    assert format_cycle(["A"]) == "A → A"


def test_reachable_from_origins(make_flow: Any) -> None:
    flow = make_flow(
        names("O", "A", "B", "Island", "IslandSink", "Loner"),
        [("O", "A"), ("A", "B"), ("Island", "IslandSink"), ("B", "Ghost")],
    )
    assert reachable_from_origins(flow, ["O"]) == {"O", "A", "B"}
    assert reachable_from_origins(flow, ["O", "Island"]) == {"O", "A", "B", "Island", "IslandSink"}
    assert reachable_from_origins(flow, ["NotAStage"]) == set()
    assert reachable_from_origins(flow, []) == set()


def test_reachability_survives_cycles(make_flow: Any) -> None:
    flow = make_flow(names("O", "A", "B", "C"), [("O", "A"), ("A", "B"), ("B", "A"), ("B", "C")])
    assert reachable_from_origins(flow, ["O"]) == {"O", "A", "B", "C"}
