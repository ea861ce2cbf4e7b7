"""The engine: runs one flow locally on Arrow record batches."""

from flowport.engine.metrics import StageMetrics
from flowport.engine.plan import RunContext
from flowport.engine.preview import PreviewStage, preview_flow
from flowport.engine.run import FlowRun, RunResult, RunStatus, databases_ahead, run_flow

__all__ = [
    "FlowRun",
    "PreviewStage",
    "RunContext",
    "RunResult",
    "RunStatus",
    "StageMetrics",
    "databases_ahead",
    "preview_flow",
    "run_flow",
]
