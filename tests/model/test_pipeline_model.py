"""The pipeline document: graph checks, order, downstream, locks, restrictions (pure, no I/O)."""

from __future__ import annotations

import pytest

from flowport.model.pipeline import PipelineDocumentError, pipeline_from_dict, pipeline_to_dict


def _chain(n: int) -> list[dict[str, object]]:
    return [{"name": f"t{i}", "type": "empty", "after": [f"t{i - 1}"] if i else []} for i in range(n)]


def test_a_long_chain_orders_and_a_cycle_deep_in_it_is_found_without_recursion_limits() -> None:
    pipeline = pipeline_from_dict({"name": "long", "tasks": _chain(3000)})
    assert pipeline.order() == [f"t{i}" for i in range(3000)]
    assert pipeline.downstream("t2990") == {f"t{i}" for i in range(2991, 3000)}
    tasks = _chain(3000)
    tasks[0]["after"] = ["t2999"]
    with pytest.raises(PipelineDocumentError) as cycle:
        pipeline_from_dict({"name": "loop", "tasks": tasks})
    assert "cycle: t0 -> t2999 -> t2998" in cycle.value.message


def test_order_keeps_the_documents_order_among_ready_tasks_and_locks_default_by_type() -> None:
    pipeline = pipeline_from_dict(
        {
            "name": "p",
            "tasks": [
                {"name": "b", "type": "flow", "flow": "Orders", "after": ["a"]},
                {"name": "a", "type": "shell", "command": "true"},
                {"name": "c", "type": "http", "url": "https://x.example/", "lock": True},
                {
                    "name": "d",
                    "type": "dbt",
                    "command": "run",
                    "project_dir": "dbt",
                    "after": ["b"],
                    "targets": {"dev": {"connection": "wh", "schema": "dev"}},
                    "lock": False,
                },
            ],
        }
    )
    assert pipeline.order() == ["a", "c", "b", "d"]
    assert pipeline.locks() == {"flow:Orders": "b", "task:c": "c"}
    assert pipeline.restrictions() == {"execute-code", "execute-sql", "network"}
    assert pipeline.task("d").retry_wait(3) == 40.0  # 10 s, doubled twice
    again = pipeline_from_dict(pipeline_to_dict(pipeline))
    assert again == pipeline


def test_every_problem_is_reported_with_where_it_is() -> None:
    with pytest.raises(PipelineDocumentError) as bad:
        pipeline_from_dict(
            {
                "name": "p",
                "tasks": [
                    {"name": "a", "type": "shell", "command": "x", "env": {"1BAD": "v"}},
                    {"name": "b", "type": "http", "url": "ftp://x", "body": "x"},
                ],
            }
        )
    details = bad.value.details
    assert any(d.startswith("tasks[0].shell.env:") and "1BAD" in d for d in details)
    assert any(d.startswith("tasks[1].http.url:") for d in details)
    with pytest.raises(PipelineDocumentError, match="unsupported pipeline format"):
        pipeline_from_dict({"format": "flowport.pipeline/9", "name": "p", "tasks": []})
