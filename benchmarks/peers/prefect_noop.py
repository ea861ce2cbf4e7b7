"""Prefect 3: a flow of N no-op tasks (a fan-out, a join, a chain) on its default task runner.

Run by benchmarks/orchestration.py in its own virtual environment (an ephemeral Prefect server
with SQLite in a temporary PREFECT_HOME); a warm-up flow starts that server before the clock
starts. Prints one JSON line.
"""

import json
import sys
import time

from prefect import flow, task


@task
def noop() -> None:
    return None


@flow
def warm_up() -> None:
    noop()


def main(fan: int, chain: int) -> None:
    @flow
    def noops() -> int:
        first = noop.submit()
        branches = [noop.with_options(name=f"f{i}").submit(wait_for=[first]) for i in range(fan)]
        previous = noop.with_options(name="join").submit(wait_for=branches)
        for i in range(chain):
            previous = noop.with_options(name=f"c{i}").submit(wait_for=[previous])
        previous.result()
        return 2 + fan + chain

    warm_up()
    began = time.perf_counter()
    tasks = noops()
    seconds = time.perf_counter() - began
    print(json.dumps({"tasks": tasks, "seconds": seconds}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
