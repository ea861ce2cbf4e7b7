"""Auto-arrange: layered left-to-right layout."""

from __future__ import annotations

from typing import Any

from flowport.model.flow import Flow
from flowport.model.layout import auto_arrange


def positions(flow: Flow) -> dict[str, tuple[float, float]]:
    out = {}
    for stage in flow.stages:
        assert stage.position is not None
        out[stage.name] = (stage.position.x, stage.position.y)
    return out


def crossings(flow: Flow) -> int:
    """Pairs of edges between the same two columns whose ends swap order."""
    pos = positions(flow)
    segments = [(pos[e.from_], pos[e.to]) for e in flow.edges]
    count = 0
    for i, (a1, a2) in enumerate(segments):
        for b1, b2 in segments[i + 1 :]:
            if a1[0] == b1[0] and a2[0] == b2[0] and (a1[1] - b1[1]) * (a2[1] - b2[1]) < 0:
                count += 1
    return count


def stages(*stage_names: str) -> list[tuple[str, str]]:
    return [(n, "filter") for n in stage_names]


def test_chain_is_one_straight_line(make_flow: Any) -> None:
    flow = auto_arrange(make_flow(stages("O", "A", "D"), [("O", "A"), ("A", "D")]))
    assert positions(flow) == {"O": (0.0, 0.0), "A": (220.0, 0.0), "D": (440.0, 0.0)}


def test_column_is_the_longest_path_from_a_source(make_flow: Any) -> None:
    flow = make_flow(stages("O", "A", "B", "D"), [("O", "A"), ("A", "B"), ("B", "D"), ("O", "D")])
    assert {name: x for name, (x, _) in positions(auto_arrange(flow)).items()} == {
        "O": 0.0,
        "A": 220.0,
        "B": 440.0,
        "D": 660.0,
    }


def test_branches_share_a_column_and_are_centred(make_flow: Any) -> None:
    flow = make_flow(stages("O", "A", "B", "D"), [("O", "A"), ("O", "B"), ("A", "D"), ("B", "D")])
    assert positions(auto_arrange(flow, x_gap=100, y_gap=50)) == {
        "O": (0.0, 25.0),
        "A": (100.0, 0.0),
        "B": (100.0, 50.0),
        "D": (200.0, 25.0),
    }


def test_barycenter_ordering_removes_crossings(make_flow: Any) -> None:
    # Listed so that list order alone would cross both pairs of edges.
    flow = make_flow(
        stages("O1", "O2", "P2", "P1", "D2", "D1"),
        [("O1", "P1"), ("O2", "P2"), ("P1", "D1"), ("P2", "D2")],
    )
    arranged = auto_arrange(flow)
    pos = positions(arranged)
    assert pos["P1"][1] < pos["P2"][1]
    assert pos["D1"][1] < pos["D2"][1]
    assert crossings(arranged) == 0


def test_ties_keep_list_order(make_flow: Any) -> None:
    flow = make_flow(stages("O", "B", "A", "C"), [("O", "A"), ("O", "B"), ("O", "C")])
    pos = positions(auto_arrange(flow))
    assert pos["B"][1] < pos["A"][1] < pos["C"][1]


def test_isolated_stages_go_in_the_first_column(make_flow: Any) -> None:
    flow = make_flow(stages("O", "Loner", "A"), [("O", "A")])
    pos = positions(auto_arrange(flow))
    assert pos["Loner"][0] == 0.0
    assert pos["O"][1] < pos["Loner"][1]


def test_cycles_do_not_crash_and_every_stage_gets_its_own_place(make_flow: Any) -> None:
    flow = make_flow(
        stages("O", "A", "B", "C", "Self"),
        [("O", "A"), ("A", "B"), ("B", "C"), ("C", "A"), ("Self", "Self"), ("X", "A")],
    )
    pos = positions(auto_arrange(flow))
    assert len(set(pos.values())) == len(pos)
    assert pos["O"][0] < pos["A"][0] < pos["B"][0] < pos["C"][0]


def test_a_pure_cycle_is_laid_out(make_flow: Any) -> None:
    flow = make_flow(stages("A", "B"), [("A", "B"), ("B", "A")])
    assert positions(auto_arrange(flow)) == {"A": (0.0, 0.0), "B": (220.0, 0.0)}


def test_returns_a_copy(make_flow: Any) -> None:
    flow = make_flow(stages("O", "A"), [("O", "A")])
    arranged = auto_arrange(flow)
    assert all(stage.position is None for stage in flow.stages)
    assert arranged.model_copy(update={"stages": flow.stages}) == flow


def test_empty_flow(make_flow: Any) -> None:
    assert auto_arrange(make_flow([])).stages == []


def test_larger_flow_every_edge_points_right(make_flow: Any) -> None:
    names = [f"S{i}" for i in range(30)]
    edges = [(names[i], names[j]) for i in range(30) for j in (2 * i + 1, 2 * i + 2, i + 5) if j < 30]
    arranged = auto_arrange(make_flow(stages(*reversed(names)), edges))
    pos = positions(arranged)
    assert all(pos[a][0] < pos[b][0] for a, b in edges)
    assert len(set(pos.values())) == len(pos)
