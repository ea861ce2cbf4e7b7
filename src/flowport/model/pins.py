"""Widening exact artifact pins into version ranges.

A flow exported from one instance pins every stage's artifact to the exact
version that instance had (``"version": "1.2.0"``). An instance with other
versions cannot resolve an exact pin; a range it can (the seed's ``sed``
step, done on the JSON). By default a pin ``X.Y.Z`` becomes
``[X.Y.Z,X+1.0.0)``: any later release of the same major version, which by
definition stays compatible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowport.model.flow import Flow
from flowport.model.versions import ArtifactVersion, VersionRange

__all__ = ["PinChange", "widen_pins"]


@dataclass(frozen=True)
class PinChange:
    """One stage's artifact version rewritten."""

    flow: str
    stage: str
    artifact: str
    before: str
    after: str

    def to_dict(self) -> dict[str, Any]:
        """The change as plain data."""
        return {
            "flow": self.flow,
            "stage": self.stage,
            "artifact": self.artifact,
            "from": self.before,
            "to": self.after,
        }


def _major_range(version: ArtifactVersion) -> str:
    return f"[{version},{version.major + 1}.0.0)"


def widen_pins(flow: Flow, version_range: str | None = None) -> tuple[Flow, list[PinChange]]:
    """Rewrite every exact artifact version of ``flow`` into a range.

    ``version_range`` (e.g. ``[0.0.1,10.0.0]``) is used for every pin when
    given (it is checked first); otherwise each pin gets its major-version
    range. Stages already pinned to a range, or not pinned, are left alone.
    """
    if version_range is not None:
        VersionRange.parse(version_range)
    changes: list[PinChange] = []
    updated = flow.model_copy(deep=True)
    for stage in [*updated.stages]:
        artifact = stage.plugin.artifact
        if artifact is None or not artifact.version or artifact.version.strip()[0] in "[(":
            continue
        exact = ArtifactVersion.parse(artifact.version)
        wider = version_range or _major_range(exact)
        changes.append(
            PinChange(flow.name, stage.name, artifact.name or stage.plugin.name, artifact.version, wider)
        )
        artifact.version = wider
    error_artifact = updated.error_stage.plugin.artifact
    if (
        error_artifact is not None
        and error_artifact.version
        and error_artifact.version.strip()[0] not in "[("
    ):
        exact = ArtifactVersion.parse(error_artifact.version)
        wider = version_range or _major_range(exact)
        changes.append(
            PinChange(
                flow.name, updated.error_stage.name, error_artifact.name or "", error_artifact.version, wider
            )
        )
        error_artifact.version = wider
    return updated, changes
