"""Auto-arrange: place a flow's stages left to right by their connections.

A simple layered (Sugiyama-style) layout, enough for flows people draw by
hand: a stage's column is the length of the longest path reaching it from a
source, so every edge points rightwards; inside a column stages are ordered
by the mean row of the stages feeding them (the barycenter heuristic, which
removes most edge crossings), ties broken by the order of ``flow.stages``.
Columns are centred on each other so a straight chain stays on one line.
"""

from __future__ import annotations

import heapq

from flowport.model.flow import Flow, Position

__all__ = ["auto_arrange"]


def _acyclic_order(count: int, succ: list[list[int]]) -> list[int]:
    """A topological order of stage indices that breaks cycles instead of failing.

    When no stage is ready, the earliest-listed remaining stage goes next and
    its remaining inputs count as back edges; layout must work on a flow the
    user is still editing, cycles included.
    """
    indegree = [0] * count
    for targets in succ:
        for t in targets:
            indegree[t] += 1
    placed = [False] * count
    ready = [i for i in range(count) if indegree[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    next_unplaced = 0
    while len(order) < count:
        if ready:
            node = heapq.heappop(ready)
            if placed[node]:
                continue
        else:
            while placed[next_unplaced]:
                next_unplaced += 1
            node = next_unplaced
        placed[node] = True
        order.append(node)
        for t in succ[node]:
            indegree[t] -= 1
            if indegree[t] == 0 and not placed[t]:
                heapq.heappush(ready, t)
    return order


def auto_arrange(flow: Flow, x_gap: float = 220.0, y_gap: float = 140.0) -> Flow:
    """A copy of ``flow`` with every stage's ``position`` set by a layered left-to-right layout.

    Args:
        flow: The flow to arrange (it is not modified).
        x_gap: Horizontal distance between two columns.
        y_gap: Vertical distance between two stages of a column.
    """
    arranged = flow.model_copy(deep=True)
    count = len(arranged.stages)
    if count == 0:
        return arranged
    first: dict[str, int] = {}
    for i, stage in enumerate(arranged.stages):
        first.setdefault(stage.name, i)
    succ: list[list[int]] = [[] for _ in range(count)]
    for edge in arranged.edges:
        source, target = first.get(edge.from_), first.get(edge.to)
        if source is not None and target is not None and source != target and target not in succ[source]:
            succ[source].append(target)

    order = _acyclic_order(count, succ)
    rank = {node: r for r, node in enumerate(order)}
    # Only edges going forward in that order shape the layers; back edges of cycles are ignored.
    preds: list[list[int]] = [[] for _ in range(count)]
    for source, targets in enumerate(succ):
        for t in targets:
            if rank[source] < rank[t]:
                preds[t].append(source)

    layer = [0] * count
    for node in order:
        if preds[node]:
            layer[node] = max(layer[p] + 1 for p in preds[node])

    columns = [[i for i in range(count) if layer[i] == column] for column in range(max(layer) + 1)]
    tallest = max(len(members) for members in columns)
    # Drawn row of each stage (columns centred), which the next columns align to.
    row = [0.0] * count
    for column, members in enumerate(columns):

        def barycenter(i: int) -> tuple[float, int]:
            # Every stage past column 0 has a feeder; column 0 keeps list order.
            feeders = [row[p] for p in preds[i]]
            return (sum(feeders) / len(feeders) if feeders else 0.0, i)

        if column:
            members.sort(key=barycenter)
        offset = (tallest - len(members)) / 2
        for r, i in enumerate(members):
            row[i] = r + offset
            arranged.stages[i].position = Position(x=column * x_gap, y=row[i] * y_gap)
    return arranged
