"""The domain error hierarchy shared by every layer, the API and the SDK.

Every error carries a message written for the user (what went wrong, where,
how to fix it) and optional structured ``details``. Every error class of
Flowport lives here, without any HTTP notion: the API maps each class to a
status (``flowport.api.errors``), and the SDK rebuilds the same class from
an answer's name, whatever class it is.
"""

from __future__ import annotations

import difflib
from typing import Any

__all__ = [
    "Conflict",
    "ConnectionFailed",
    "FlowDocumentError",
    "FlowInvalid",
    "FlowportError",
    "Forbidden",
    "InvalidSettings",
    "LaunchFailed",
    "LocksHeld",
    "NotFound",
    "PackageInvalid",
    "PathNotAllowed",
    "PipelineDocumentError",
    "PluginNotFound",
    "RequestTooLarge",
    "RunFailed",
    "SecretKeyError",
    "StageError",
    "StoreNotReady",
    "TaskFailed",
    "Unauthorized",
    "UnknownParameters",
    "UnresolvedParameters",
    "ValidationFailed",
    "VersionSyntaxError",
    "error_classes",
]


class FlowportError(Exception):
    """Base of every error Flowport raises on purpose."""

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body the API sends."""
        return {"name": type(self).__name__, "message": self.message, "details": self.details}


class ValidationFailed(FlowportError):
    """Input (a flow, a package, a body, a configuration) is not valid."""


class FlowDocumentError(ValidationFailed):
    """A flow document cannot be parsed into a flow."""


class PipelineDocumentError(ValidationFailed):
    """A pipeline document cannot be parsed into a valid pipeline."""


class VersionSyntaxError(ValidationFailed):
    """An artifact version or version range is malformed."""


class NotFound(FlowportError):
    """The named object does not exist."""


class PluginNotFound(NotFound):
    """No installed artifact provides the requested stage plugin."""


class Conflict(FlowportError):
    """The request conflicts with the current state (duplicate name, ...)."""


class LocksHeld(Conflict):
    """A pipeline run cannot start: another run holds one of its task locks (``details`` names each)."""


class Unauthorized(FlowportError):
    """No or bad credentials."""


class Forbidden(FlowportError):
    """Valid credentials, but the role may not do this."""


class StageError(FlowportError):
    """A stage failed while running (not a record error: the whole stage)."""

    def __init__(self, stage: str, message: str, *, code: str = "STAGE_FAILED", details: Any = None) -> None:
        super().__init__(f"Stage '{stage}' failed: {message}", details=details)
        self.stage = stage
        self.code = code
        #: The message without the "Stage '...' failed: " prefix (for a validation issue on the stage).
        self.reason = message


class TaskFailed(FlowportError):
    """One try of a pipeline task failed; the message says why (secrets masked)."""


class RunFailed(FlowportError):
    """A job run ended in failure."""


class FlowInvalid(ValidationFailed):
    """The flow did not pass validation; ``result`` holds every issue (a ValidationResult)."""

    def __init__(self, result: Any) -> None:
        lines = [f"{i.instance_name or '(flow)'}: {i.message} [{i.code}]" for i in result.issues]
        super().__init__("Validation Failed:\n  " + "\n  ".join(lines), details=result.to_dict())
        self.result = result


class PackageInvalid(ValidationFailed):
    """A package archive or its manifest cannot be imported; the message names the entry and the fix."""


class InvalidSettings(ValidationFailed):
    """The instance's settings (environment or settings file) are malformed or unsafe."""


class RequestTooLarge(ValidationFailed):
    """The request body is larger than the instance accepts."""


class PathNotAllowed(ValidationFailed):
    """A path resolves outside the instance's file roots, or names a protected file.

    ``code`` is ``PATH_OUTSIDE_ROOTS`` or ``PATH_PROTECTED``.
    """

    def __init__(self, message: str, *, code: str = "PATH_OUTSIDE_ROOTS") -> None:
        super().__init__(message, details={"code": code})
        self.code = code


class UnresolvedParameters(ValidationFailed):
    """Configuration refers to parameters that have no value."""

    def __init__(self, names: set[str] | list[str]) -> None:
        self.names = sorted(set(names))
        listed = ", ".join(f"'{n}'" for n in self.names)
        if len(self.names) == 1:
            head, pronoun, example = f"Parameter {listed} is", "it", self.names[0]
        else:
            head, pronoun, example = f"Parameters {listed} are", "them", "NAME"
        super().__init__(
            f"{head} not defined: add {pronoun} to the flow's parameters, a parameter set the flow uses, "
            f"or pass --param {example}=VALUE",
            details={"missing": self.names},
        )


class UnknownParameters(ValidationFailed):
    """Run-time overrides name parameters the flow does not have (a typo would otherwise be ignored)."""

    def __init__(self, unknown: list[str], known: list[str]) -> None:
        self.unknown = sorted(set(unknown))
        self.known = sorted(set(known))
        parts = []
        for name in self.unknown:
            close = difflib.get_close_matches(name, self.known, n=1)
            parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        noun = "parameter" if len(self.unknown) == 1 else "parameters"
        have = ", ".join(self.known) if self.known else "none"
        super().__init__(
            f"Unknown {noun} {', '.join(parts)}: the flow's parameters are {have}. "
            "Fix the name, or add the parameter to the flow or to a parameter set it uses",
            details={"unknown": self.unknown, "known": self.known},
        )


class SecretKeyError(FlowportError):
    """The secret key is missing, malformed, or not the one the secrets were encrypted with."""


class ConnectionFailed(FlowportError):
    """The external system could not be reached or refused the login (message already scrubbed)."""


class StoreNotReady(FlowportError):
    """The metadata database does not exist yet or is not at this Flowport's schema."""


class LaunchFailed(FlowportError):
    """No worker could take a job (the pool could not start, the broker is unreachable)."""


def error_classes() -> list[type[FlowportError]]:
    """Every error class of Flowport (the whole hierarchy under :class:`FlowportError`)."""
    found: list[type[FlowportError]] = []
    pending: list[type[FlowportError]] = [FlowportError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
