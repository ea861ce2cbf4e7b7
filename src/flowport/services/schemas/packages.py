"""The body of ``POST /v4/packages`` (a package of several flows)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from flowport.services.packages import MAX_EXPORT_FLOWS
from flowport.services.schemas.common import MAX_ID

__all__ = ["ExportBody"]


class ExportBody(BaseModel):
    """The body of ``POST /v4/packages``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    flow_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        alias="flowIds", min_length=1, max_length=MAX_EXPORT_FLOWS
    )
    with_plain_text_credentials: bool = Field(default=False, alias="withPlainTextCredentials")
