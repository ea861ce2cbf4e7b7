"""The domain error hierarchy shared by every layer, the API and the SDK.

Every error carries a message written for the user (what went wrong, where,
how to fix it) and optional structured ``details``. The API maps each class to
an HTTP status; the SDK maps statuses back to the same classes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "FlowDocumentError",
    "FlowportError",
    "Forbidden",
    "NotFound",
    "PluginNotFound",
    "RunFailed",
    "StageError",
    "Unauthorized",
    "ValidationFailed",
    "VersionSyntaxError",
]


class FlowportError(Exception):
    """Base of every error Flowport raises on purpose."""

    status_code: int = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body the API sends."""
        return {"name": type(self).__name__, "message": self.message, "details": self.details}


class ValidationFailed(FlowportError):
    """Input (a flow, a package, a body, a configuration) is not valid."""

    status_code = 422


class FlowDocumentError(ValidationFailed):
    """A flow document cannot be parsed into a flow."""


class VersionSyntaxError(ValidationFailed):
    """An artifact version or version range is malformed."""


class NotFound(FlowportError):
    """The named object does not exist."""

    status_code = 404


class PluginNotFound(NotFound):
    """No installed artifact provides the requested stage plugin."""


class Conflict(FlowportError):
    """The request conflicts with the current state (duplicate name, ...)."""

    status_code = 409


class Unauthorized(FlowportError):
    """No or bad credentials."""

    status_code = 401


class Forbidden(FlowportError):
    """Valid credentials, but the role may not do this."""

    status_code = 403


class StageError(FlowportError):
    """A stage failed while running (not a record error: the whole stage)."""

    def __init__(self, stage: str, message: str, *, code: str = "STAGE_FAILED", details: Any = None) -> None:
        super().__init__(f"Stage '{stage}' failed: {message}", details=details)
        self.stage = stage
        self.code = code
        #: The message without the "Stage '...' failed: " prefix (for a validation issue on the stage).
        self.reason = message


class RunFailed(FlowportError):
    """A job run ended in failure."""
