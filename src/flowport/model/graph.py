"""The flow as a directed graph: execution order, cycles and reachability.

Every function here tolerates a flow that is not valid yet (edges naming
stages that do not exist, duplicate stage names, duplicate edges), because
the editor and the validator call them on flows still being built. Edges
whose ends are not stages are ignored; a duplicated stage name counts once,
at its first position; a duplicated edge counts once.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable

from flowport.errors import ValidationFailed
from flowport.model.flow import Flow

__all__ = ["find_cycles", "format_cycle", "reachable_from_origins", "topological_order"]


def _stage_index(flow: Flow) -> dict[str, int]:
    # First occurrence wins: a duplicated name is a validation issue, not a crash.
    index: dict[str, int] = {}
    for i, stage in enumerate(flow.stages):
        index.setdefault(stage.name, i)
    return index


def _successors(flow: Flow, index: dict[str, int]) -> dict[str, list[str]]:
    succ: dict[str, list[str]] = {name: [] for name in index}
    for edge in flow.edges:
        if edge.from_ in index and edge.to in index and edge.to not in succ[edge.from_]:
            succ[edge.from_].append(edge.to)
    return succ


def format_cycle(cycle: list[str]) -> str:
    """A cycle as text, back to its start: ``A → B → A``."""
    return " → ".join([*cycle, cycle[0]]) if cycle else ""


def topological_order(flow: Flow) -> list[str]:
    """Stage names so that every stage comes after the stages feeding it.

    Among stages that are ready at the same time the one listed first in
    ``flow.stages`` comes first, so the order is stable and matches what the
    user sees.

    Raises:
        ValidationFailed: the flow has a cycle; the message names its stages
            and ``details`` holds every cycle from :func:`find_cycles`.
    """
    index = _stage_index(flow)
    succ = _successors(flow, index)
    indegree = dict.fromkeys(index, 0)
    for targets in succ.values():
        for target in targets:
            indegree[target] += 1
    # A heap keyed by list position picks the earliest-listed ready stage.
    ready = [(i, name) for name, i in index.items() if indegree[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for target in succ[name]:
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(ready, (index[target], target))
    if len(order) < len(index):
        cycles = find_cycles(flow)
        described = "; ".join(format_cycle(c) for c in cycles)
        raise ValidationFailed(
            f"The flow has a cycle: {described}. A flow must be acyclic: remove one edge of each cycle.",
            details=cycles,
        )
    return order


def _strongly_connected(names: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so a long chain cannot hit the recursion limit."""
    counter = 0
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in names:
        if root in number:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        number[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, child = work[-1]
            targets = succ[node]
            if child < len(targets):
                work[-1] = (node, child + 1)
                target = targets[child]
                if target not in number:
                    number[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], number[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == number[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle_through(start: str, members: set[str], succ: dict[str, list[str]]) -> list[str]:
    # Breadth-first inside the component gives the shortest cycle, which is
    # the easiest one for a user to read and to break.
    parent: dict[str, str] = {}
    queue: deque[str] = deque()
    for target in succ[start]:
        if target in members and target != start and target not in parent:
            parent[target] = start
            queue.append(target)
    while queue:
        node = queue.popleft()
        for target in succ[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return list(reversed(path))
            if target in members and target not in parent:
                parent[target] = node
                queue.append(target)
    return [start]  # unreachable for a true component; kept for safety


def find_cycles(flow: Flow) -> list[list[str]]:
    """The cycles of the flow, each as the stage names along it (start not repeated).

    A stage feeding itself is the cycle ``[name]``. Beyond self-loops, every
    group of stages that can reach each other yields one cycle: the shortest
    one through the group's earliest-listed stage, so that removing one of
    its edges is a concrete fix. Cycles are ordered by where their first
    stage is listed; an acyclic flow gives ``[]``.
    """
    index = _stage_index(flow)
    succ = _successors(flow, index)
    names = list(index)
    found: list[list[str]] = [[name] for name in names if name in succ[name]]
    # Self-loops are reported on their own, so they must not hide a longer cycle.
    without_loops = {name: [t for t in targets if t != name] for name, targets in succ.items()}
    for component in _strongly_connected(names, without_loops):
        if len(component) < 2:
            continue
        start = min(component, key=index.__getitem__)
        found.append(_shortest_cycle_through(start, set(component), without_loops))
    found.sort(key=lambda cycle: (index[cycle[0]], len(cycle)))
    return found


def reachable_from_origins(flow: Flow, origin_names: Iterable[str]) -> set[str]:
    """Names of the stages reachable from ``origin_names`` along edges (origins included).

    Names that are not stages of the flow are ignored.
    """
    index = _stage_index(flow)
    succ = _successors(flow, index)
    seen = {name for name in origin_names if name in index}
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        for target in succ[node]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen
