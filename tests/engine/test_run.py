"""The engine runs flows: fan-out/in, error records, policies, failure, cancellation, bounded memory."""

from __future__ import annotations

import time

import pyarrow.compute as pc
from tests.engine.toy_stages import EVENTS, make_flow, run, stage, store

from flowport.engine.plan import RunContext
from flowport.engine.run import FlowRun


def test_linear_flow_moves_every_record_and_counts_them(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=1000),
            stage("Scale", "scale", factor=3),
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Scale"), ("Scale", "Out")],
        configuration={"batch_size": 64},
    )
    result = run(flow, registry)
    assert result.status == "Complete", result.error
    out = store("out")["committed"]
    assert out.num_rows == 1000
    assert sorted(out.column("n").to_pylist()) == [3 * i for i in range(1000)]
    assert "__fp_rid" not in out.column_names  # lineage never reaches a destination
    m = result.stages
    assert (m["Src"].output_records, m["Scale"].input_records, m["Scale"].output_records) == (
        1000,
        1000,
        1000,
    )
    assert m["Out"].input_records == 1000 and m["Src"].output_batches == 16


def test_fan_out_sends_every_batch_to_each_branch_and_fan_in_merges(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=100),
            stage("A", "scale", factor=2),
            stage("B", "scale", factor=5),
            stage("Both", "collect", key="both"),
            stage("OnlyA", "collect", key="a"),
        ],
        [("Src", "A"), ("Src", "B"), ("A", "Both"), ("B", "Both"), ("A", "OnlyA")],
        configuration={"batch_size": 7},
    )
    result = run(flow, registry)
    assert result.status == "Complete", result.error
    both = sorted(store("both")["committed"].column("n").to_pylist())
    assert both == sorted([2 * i for i in range(100)] + [5 * i for i in range(100)])
    assert store("a")["committed"].num_rows == 100
    assert result.stages["Both"].input_records == 200


def test_error_records_go_to_error_stage_as_the_origin_read_them(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=20),
            stage("Scale", "scale", factor=10),
            stage("Reject", "reject_multiples", divisor=3),
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Scale"), ("Scale", "Reject"), ("Reject", "Out")],
        configuration={"batch_size": 4, "error_record_policy": "ORIGINAL_RECORD"},
    )
    result = run(flow, registry)
    assert result.status == "Complete", result.error
    errors = store("errors")["committed"]
    # n*10 divisible by 3 <=> n divisible by 3: 0,3,...,18 -> 7 records
    assert errors.num_rows == 7 and result.error_records == 7
    assert set(errors.column("stage").to_pylist()) == {"Reject"}
    assert set(errors.column("code").to_pylist()) == {"MULTIPLE"}
    assert set(errors.column("policy").to_pylist()) == {"ORIGINAL_RECORD"}
    records = errors.column("record").to_pylist()
    assert [r["n"] for r in records] == [0, 3, 6, 9, 12, 15, 18]  # unscaled: as the origin read them
    assert all("scaled" not in r for r in records)
    assert store("out")["committed"].num_rows == 13
    assert result.stages["Reject"].error_records == 7


def test_stage_record_policy_sends_the_record_as_the_failing_stage_saw_it(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=20),
            stage("Scale", "scale", factor=10),
            stage("Reject", "reject_multiples", divisor=3),
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Scale"), ("Scale", "Reject"), ("Reject", "Out")],
        configuration={"batch_size": 4, "error_record_policy": "STAGE_RECORD"},
    )
    run(flow, registry)
    records = store("errors")["committed"].column("record").to_pylist()
    assert [r["n"] for r in records] == [0, 30, 60, 90, 120, 150, 180]
    assert all(r["scaled"] is True for r in records)


def test_on_record_error_discard_counts_but_does_not_route(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=10),
            {**stage("Reject", "reject_multiples", divisor=2), "on_record_error": "discard"},
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Reject"), ("Reject", "Out")],
    )
    result = run(flow, registry)
    assert result.status == "Complete"
    assert result.stages["Reject"].error_records == 5
    assert store("errors")["committed"] is None
    assert store("out")["committed"].column("n").to_pylist() == [1, 3, 5, 7, 9]


def test_on_record_error_stop_pipeline_fails_the_run_and_writes_nothing(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=10),
            {**stage("Reject", "reject_multiples", divisor=4), "on_record_error": "stop_pipeline"},
            stage("Out", "collect", key="out"),
        ],
        [("Src", "Reject"), ("Reject", "Out")],
    )
    result = run(flow, registry)
    assert result.status == "Failed"
    assert result.error_stage == "Reject"
    assert "MULTIPLE" in result.error and "divisible by 4" in result.error
    assert store("out")["committed"] is None and store("out")["aborted"] is True


def test_a_failing_stage_fails_the_run_and_aborts_every_destination(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=100),
            stage("Boom", "explode", at=50),
            stage("Out", "collect", key="out"),
            stage("Side", "collect", key="side"),
        ],
        [("Src", "Boom"), ("Boom", "Out"), ("Src", "Side")],
        configuration={"batch_size": 10},
    )
    result = run(flow, registry)
    assert result.status == "Failed"
    assert result.error_stage == "Boom" and "boom at 50" in result.error
    for key in ("out", "side"):
        assert store(key)["committed"] is None and store(key)["aborted"] is True


def test_a_destination_that_connects_opens_while_the_origin_already_reads(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=100, progress_key="ev"),
            stage("Out", "remote_collect", key="out", progress_key="ev"),
        ],
        [("Src", "Out")],
        configuration={"batch_size": 10},
    )
    result = run(flow, registry)
    assert result.status == "Complete", result.error
    # Opened in its own thread: the origin's first batch was made before its open returned.
    assert store("out")["origin_read_first"] is True and store("out")["opened"] is True
    assert store("out")["committed"].column("n").to_pylist() == list(range(100))
    assert store("out")["closed"] is True


def test_a_destination_that_cannot_open_while_running_fails_the_run_and_publishes_nothing(registry):
    flow = make_flow(
        [
            stage("Src", "numbers", count=100, progress_key="ev"),
            stage("Out", "remote_collect", key="out", progress_key="ev", fail_open=True),
            stage("Side", "collect", key="side"),
        ],
        [("Src", "Out"), ("Src", "Side")],
        configuration={"batch_size": 10},
    )
    result = run(flow, registry)
    assert result.status == "Failed"
    assert result.error_stage == "Out" and "cannot reach the server" in result.error
    assert store("out")["origin_read_first"] is True and store("out")["opened"] is False
    # Nothing is published anywhere; the stage that failed to open is still aborted and closed.
    for key in ("out", "side"):
        assert store(key)["committed"] is None and store(key)["aborted"] is True
    assert store("out")["closed"] is True


def test_cancel_stops_a_running_flow_and_aborts_destinations(registry):
    flow = make_flow(
        [stage("Src", "numbers", forever=True, delay=0.01), stage("Out", "collect", key="out")],
        [("Src", "Out")],
        configuration={"batch_size": 10},
    )
    running = FlowRun(flow, registry, RunContext()).start()
    deadline = time.time() + 10
    while running.metrics["Out"].input_records < 50 and time.time() < deadline:
        time.sleep(0.01)
    running.cancel()
    result = running.wait(timeout=10)
    assert result.status == "Canceled"
    assert store("out")["aborted"] is True and store("out")["committed"] is None


def test_bounded_queues_keep_a_fast_origin_from_running_ahead(registry):
    queue_size = 2
    flow = make_flow(
        [
            stage("Src", "numbers", count=400, progress_key="ev"),
            stage("Scale", "scale", factor=1),
            stage("Out", "collect", key="out", delay=0.005, progress_key="ev"),
        ],
        [("Src", "Scale"), ("Scale", "Out")],
        configuration={"batch_size": 4, "queue_size": queue_size},
    )
    result = run(flow, registry)
    assert result.status == "Complete"
    events = EVENTS["ev"]
    assert events.count("produced") == 100 and events.count("consumed") == 100
    # In flight at most: two queues full, one batch in the hands of each stage,
    # and the one the origin just made.
    bound = 2 * queue_size + 3 + 1
    in_flight = 0
    worst = 0
    for event in events:
        in_flight += 1 if event == "produced" else -1
        worst = max(worst, in_flight)
    assert worst <= bound, f"origin ran {worst} batches ahead of a slow destination"
    assert worst >= 2  # the test does exercise buffering
    assert pc.sum(store("out")["committed"].column("n")).as_py() == sum(range(400))
