"""Preview runs the first records through every stage and writes nothing."""

from __future__ import annotations

from tests.engine.toy_stages import make_flow, stage, store

from flowport.engine.preview import preview_flow


def test_preview_shows_input_and_output_per_stage_and_writes_nothing(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=1000),
            stage("Scale", "scale", factor=2),
            stage("Reject", "reject_multiples", divisor=4),
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Scale"), ("Scale", "Reject"), ("Reject", "Out")],
    )
    stages = preview_flow(flow, registry, rows=5)
    by_name = {s.instance_name: s for s in stages}
    assert [s.instance_name for s in stages] == ["Src", "Scale", "Reject", "Out"]
    assert by_name["Src"].input == []
    assert [r["n"] for r in by_name["Src"].output] == [0, 1, 2, 3, 4]
    assert [r["n"] for r in by_name["Scale"].input] == [0, 1, 2, 3, 4]
    assert [r["n"] for r in by_name["Scale"].output] == [0, 2, 4, 6, 8]
    assert all("__fp_rid" not in r for r in by_name["Scale"].output)
    assert [r["n"] for r in by_name["Reject"].output] == [2, 6]
    assert [e["record"]["n"] for e in by_name["Reject"].errors] == [0, 4, 8]
    assert {e["code"] for e in by_name["Reject"].errors} == {"MULTIPLE"}
    # The destination sees what it would receive but is never opened or written.
    assert [r["n"] for r in by_name["Out"].input] == [2, 6]
    assert by_name["Out"].output == []
    assert store("out")["opened"] is False and store("out")["staged"] == []


def test_preview_respects_the_row_limit_across_batches(registry):
    flow = make_flow([stage("Src", "numbers", count=50), stage("Out", "collect", key="o")], [("Src", "Out")])
    stages = preview_flow(flow, registry, rows=12)
    assert len(stages[0].output) == 12
    assert stages[0].to_dict()["instance_name"] == "Src"
