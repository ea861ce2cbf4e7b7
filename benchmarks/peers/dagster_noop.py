"""Dagster: a job of N no-op ops (a fan-out, a join, a chain) run with execute_in_process.

Run by benchmarks/orchestration.py in its own virtual environment; prints one JSON line.
"""

import json
import sys
import time

from dagster import In, Nothing, Out, job, op


def main(fan: int, chain: int) -> None:
    @op(ins={"after": In(Nothing)}, out=Out(Nothing))
    def noop() -> None:
        return None

    @op(out=Out(Nothing))
    def start() -> None:
        return None

    @job
    def noops():  # type: ignore[no-untyped-def]
        first = start()
        branches = [noop.alias(f"f{i}")(after=first) for i in range(fan)]
        previous = noop.alias("join")(after=branches)
        for i in range(chain):
            previous = noop.alias(f"c{i}")(after=previous)

    began = time.perf_counter()
    result = noops.execute_in_process()
    seconds = time.perf_counter() - began
    assert result.success
    ops = len([e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"])
    print(json.dumps({"tasks": ops, "seconds": seconds}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
