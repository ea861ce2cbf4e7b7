"""Deprecated: the declarative dataset classes moved to :mod:`flowport.datasets`.

``from flowport.pipelines import DatasetPipeline`` keeps working, with one
:class:`DeprecationWarning` per process pointing at the importing line. The
name ``flowport.pipelines`` will belong to orchestration pipelines (DAGs of
tasks); change spec files to ``from flowport.datasets import ...``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from flowport import datasets as _datasets

if TYPE_CHECKING:
    from flowport.datasets import DatasetPipeline, ViewPipeline

__all__ = ["DatasetPipeline", "ViewPipeline"]

#: The start of the warning's message (the CLI shows these warnings as one line).
DEPRECATION = (
    "flowport.pipelines is deprecated: import DatasetPipeline and ViewPipeline from flowport.datasets"
)

_warned = False


def __getattr__(name: str) -> Any:
    # Module __getattr__ (PEP 562) runs in the importing frame's call, so stacklevel=2 names the user's
    # line (``from flowport.pipelines import DatasetPipeline``), not the import machinery.
    global _warned
    if name not in __all__:
        raise AttributeError(f"module 'flowport.pipelines' has no attribute '{name}'")
    if not _warned:
        _warned = True
        warnings.warn(DEPRECATION, DeprecationWarning, stacklevel=2)
    return getattr(_datasets, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
