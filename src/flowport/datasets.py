"""Public home of the declarative dataset and view classes users subclass in their spec files.

from flowport.datasets import DatasetPipeline, ViewPipeline

Subclassing is optional: a class whose name contains ``DatasetPipeline`` or
``ViewPipeline`` is found by its name, as in the seed
(see :mod:`flowport.model.datasets`). ``flowport datasets compile|run``
turns a module of them into flows.
"""

from flowport.model.datasets import DatasetPipeline, ViewPipeline

__all__ = ["DatasetPipeline", "ViewPipeline"]
