"""Public home of the declarative pipeline base classes.

from flowport.pipelines import DatasetPipeline, ViewPipeline
"""

from flowport.model.dataset_pipelines import DatasetPipeline, ViewPipeline

__all__ = ["DatasetPipeline", "ViewPipeline"]
