"""``/v4/parameterSets``: named parameter values of a project (``${set__parameter}`` in flows)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import parameter_sets
from flowport.services.schemas.parameter_sets import ParameterSetCreate, ParameterSetRead, ParameterSetUpdate

__all__ = ["router"]

router = APIRouter(
    prefix="/v4/parameterSets",
    tags=["parameter sets"],
    route_class=AuthenticatedRoute,
    responses=ERROR_RESPONSES,
)


@router.get("", responses=answers(page(ParameterSetRead)))
def list_parameter_sets(
    _user: CurrentUser,
    page: PageQuery,
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
    name: Annotated[str | None, Query(max_length=255, description="Exact name.")] = None,
) -> dict[str, Any]:
    """Parameter sets of one project (``projectId``) or of all."""
    return parameter_sets.list_parameter_sets(
        project=project_id, name=name, limit=page.limit, offset=page.offset, no_limit=page.no_limit
    )


@router.post("", status_code=201, responses=answers(ParameterSetRead, 201))
def create_parameter_set(
    user: Editor,
    body: ParameterSetCreate,
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
) -> dict[str, Any]:
    """Create a parameter set in the project (the default project without ``projectId``)."""
    return parameter_sets.create_parameter_set(body, project=project_id, user=user)


@router.get("/{parameter_set_id}", responses=answers(ParameterSetRead))
def get_parameter_set(_user: CurrentUser, parameter_set_id: Id) -> dict[str, Any]:
    """The parameter set."""
    return parameter_sets.get_parameter_set(parameter_set_id)


@router.patch("/{parameter_set_id}", responses=answers(ParameterSetRead))
def update_parameter_set(user: Editor, parameter_set_id: Id, body: ParameterSetUpdate) -> dict[str, Any]:
    """Change the given fields; ``parameters`` replace the stored ones as a whole."""
    return parameter_sets.update_parameter_set(parameter_set_id, body, user=user)


@router.delete("/{parameter_set_id}", status_code=204, response_class=Response)
def delete_parameter_set(user: Editor, parameter_set_id: Id) -> Response:
    """Delete the parameter set; flows still using it fail validation until they stop."""
    parameter_sets.delete_parameter_set(parameter_set_id, user=user)
    return Response(status_code=204)
