"""``/v4/stages`` and ``/v4/artifacts``: the stage plugins installed on this instance.

The registry is cached per process and discovered again when an artifact
is installed or removed (:func:`flowport.services.flows.plugin_registry`);
the answers are computed once per registry. Installing or removing an
artifact (``POST /v4/artifacts``, ``DELETE /v4/artifacts/{name}/{version}``)
puts code on the server that flows then run: admins only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Response, UploadFile

from flowport.api.deps import Admin, AuthenticatedRoute, CurrentUser
from flowport.api.errors import ERROR_RESPONSES
from flowport.model.versions import VERSION_PATTERN
from flowport.plugins.registry import PluginRegistry
from flowport.services import artifacts
from flowport.services.flows import plugin_registry

__all__ = ["router"]

router = APIRouter(prefix="/v4", tags=["stages"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES)

_WHEEL = File(description="The artifact: a wheel (.whl) providing `flowport.stages` entry points.")
_FORCE = Query(description="Replace the installed copy of the same name and version.")
_NAME = Path(
    description="The artifact's name.",
    min_length=1,
    max_length=100,
    json_schema_extra={"pattern": artifacts.NAME_PATTERN},
)
_VERSION = Path(
    description="The artifact's version.",
    min_length=1,
    max_length=100,
    json_schema_extra={"pattern": VERSION_PATTERN},
)


@lru_cache(maxsize=1)
def _stages(registry: PluginRegistry) -> list[dict[str, Any]]:
    return [
        {
            "name": plugin.info.name,
            "label": plugin.info.label,
            "kind": plugin.info.kind.value,
            "description": getattr(plugin.cls, "description", "") or "",
            "artifact": plugin.info.artifact.as_ref(),
            # What using the stage needs permission for (read-filesystem, execute-code, ...).
            "restrictions": sorted(plugin.info.restrictions),
            "configSchema": plugin.info.config_model.model_json_schema(),
        }
        for plugin in registry.latest()
    ]


@lru_cache(maxsize=1)
def _artifacts(registry: PluginRegistry) -> list[dict[str, Any]]:
    return artifacts.list_artifacts(registry=registry)


@router.get("/stages")
def list_stages(_user: CurrentUser) -> dict[str, Any]:
    """Installed stage plugins (the highest version of each) with the JSON Schema of their configuration."""
    data = _stages(plugin_registry())
    return {"data": data, "count": len(data)}


@router.get("/artifacts")
def list_artifacts(_user: CurrentUser) -> dict[str, Any]:
    """Installed artifacts (plugin distributions), each version once, with their plugins.

    ``source`` says where each is installed: ``system`` (Flowport itself),
    ``environment`` (Flowport's Python environment) or ``instance`` (the
    instance's artifact folder ``path``); ``errors`` says why plugins failed to load.
    """
    data = _artifacts(plugin_registry())
    return {"data": data, "count": len(data)}


@router.post("/artifacts", status_code=201)
def install_artifact(
    user: Admin, data: Annotated[UploadFile, _WHEEL], force: Annotated[bool, _FORCE] = False
) -> dict[str, Any]:
    """Install a wheel as an artifact of this instance (admins only), beside its other versions.

    409 when that name and version is installed already (unless ``force``);
    422 when the upload is no wheel, has no ``flowport.stages`` entry points,
    or pip cannot install it offline.
    """
    return artifacts.install_wheel(data.file, data.filename, force=force, user=user)


@router.delete("/artifacts/{name}/{version}", status_code=204, response_class=Response)
def remove_artifact(user: Admin, name: Annotated[str, _NAME], version: Annotated[str, _VERSION]) -> Response:
    """Remove an artifact version installed in this instance (admins only)."""
    artifacts.remove_artifact(name, version, user=user)
    return Response(status_code=204)
