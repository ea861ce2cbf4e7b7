"""Typed service schemas: what each service accepts, one module per resource.

``common`` holds the types every body shares (names, parameter names, the
partial-update ``Unset``); ``connections``, ``projects``, ``parameter_sets``,
``flows``, ``deployments``, ``schedules``, ``webhooks`` and ``users`` hold
the write models of their routes, CLI commands and SDK calls. Every write
model refuses unknown keys (``extra="forbid"``) and states its rules in the
OpenAPI document (see ``common``).
"""

from flowport.services.schemas.common import NO_NUL, NOT_BLANK, PARAMETER_NAME, Name, Unset, keys_matching

__all__ = ["NOT_BLANK", "NO_NUL", "PARAMETER_NAME", "Name", "Unset", "keys_matching"]
