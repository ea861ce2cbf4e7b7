"""``/v4/stages`` and ``/v4/artifacts``: the stage plugins installed on this instance.

The registry is discovered once per process
(:func:`flowport.services.flows.plugin_registry`), so the answers are
computed once too.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from flowport.api.deps import AuthenticatedRoute, CurrentUser
from flowport.api.errors import ERROR_RESPONSES
from flowport.services.flows import plugin_registry

__all__ = ["router"]

router = APIRouter(prefix="/v4", tags=["stages"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES)


@lru_cache(maxsize=1)
def _stages() -> list[dict[str, Any]]:
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
        for plugin in plugin_registry().latest()
    ]


@lru_cache(maxsize=1)
def _artifacts() -> list[dict[str, Any]]:
    registry = plugin_registry()
    result = []
    for artifact in registry.artifacts():
        plugins = [p.info for p in registry.plugins if p.info.artifact == artifact]
        result.append(
            {
                **artifact.as_ref(),
                "plugins": [
                    {
                        "name": info.name,
                        "label": info.label,
                        "kind": info.kind.value,
                        "restrictions": sorted(info.restrictions),
                    }
                    for info in sorted(plugins, key=lambda i: (i.kind.value, i.name))
                ],
            }
        )
    return result


@router.get("/stages")
def list_stages(_user: CurrentUser) -> dict[str, Any]:
    """Installed stage plugins (the highest version of each) with the JSON Schema of their configuration."""
    data = _stages()
    return {"data": data, "count": len(data)}


@router.get("/artifacts")
def list_artifacts(_user: CurrentUser) -> dict[str, Any]:
    """Installed artifacts (plugin distributions), each version once, with their plugins."""
    data = _artifacts()
    return {"data": data, "count": len(data)}
