"""The Flowport Python SDK: drive a Flowport server's flows from Python.

>>> from flowport.sdk import Client
>>> client = Client('http://localhost:8000', username='admin', password='...')
>>> project = client.projects.get(name='default')
>>> flow = project.create_flow(name='My flow', description='optional description')
>>> origin = flow.add_stage('CSV File')
>>> origin.path = 'orders.csv'
>>> origin >> flow.add_stage('Trash')
>>> project.update_flow(flow)
<Response [200]>
>>> flow.run().wait().status
'Complete'

Deployments promote an exported flow into a (Prod) server and run it:

>>> deployment = client.deployments.create('Production Orders')
>>> deployment.set_object_import_rules([{'tableName': 'connections', ...}])
[]
>>> release = deployment.import_package('flow-WrangleOrders.zip').release
>>> deployment.run().wait().status
'Complete'

HTTP errors are raised as the server's domain exceptions
(:class:`~flowport.errors.NotFound`, :class:`~flowport.errors.Conflict`,
:class:`~flowport.errors.ValidationFailed`, ...), re-exported here.
"""

from flowport.errors import (
    Conflict,
    FlowportError,
    Forbidden,
    LocksHeld,
    NotFound,
    PluginNotFound,
    RunFailed,
    Unauthorized,
    ValidationFailed,
)
from flowport.sdk.client import Client
from flowport.sdk.deployments import (
    Deployment,
    DeploymentList,
    Deployments,
    ImportResult,
    Release,
    ReleaseList,
)
from flowport.sdk.flows import (
    BatchFlow,
    Configuration,
    ErrorStage,
    Flow,
    FlowList,
    FlowValidationError,
    PreviewRecord,
    PreviewStage,
    Stage,
    StageConfiguration,
    StageList,
    StreamingFlow,
    UnsavedChangesWarning,
    ValidationResult,
)
from flowport.sdk.jobs import Job
from flowport.sdk.parameter_sets import ParameterSet, ParameterSetList
from flowport.sdk.pipelines import Pipeline, PipelineRun, Pipelines
from flowport.sdk.projects import ImportedFlows, ImportReport, Project, ProjectList, Projects
from flowport.sdk.response import Response
from flowport.sdk.schedules import Schedule, Schedules
from flowport.sdk.webhooks import Webhook, Webhooks

__all__ = [
    "BatchFlow",
    "Client",
    "Configuration",
    "Conflict",
    "Deployment",
    "DeploymentList",
    "Deployments",
    "ErrorStage",
    "Flow",
    "FlowList",
    "FlowValidationError",
    "FlowportError",
    "Forbidden",
    "ImportReport",
    "ImportResult",
    "ImportedFlows",
    "Job",
    "LocksHeld",
    "NotFound",
    "ParameterSet",
    "ParameterSetList",
    "Pipeline",
    "PipelineRun",
    "Pipelines",
    "PluginNotFound",
    "PreviewRecord",
    "PreviewStage",
    "Project",
    "ProjectList",
    "Projects",
    "Release",
    "ReleaseList",
    "Response",
    "RunFailed",
    "Schedule",
    "Schedules",
    "Stage",
    "StageConfiguration",
    "StageList",
    "StreamingFlow",
    "Unauthorized",
    "UnsavedChangesWarning",
    "ValidationFailed",
    "ValidationResult",
    "Webhook",
    "Webhooks",
]
