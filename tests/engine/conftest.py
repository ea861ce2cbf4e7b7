from __future__ import annotations

import pytest
from tests.engine.toy_stages import toy_registry

from flowport.plugins.registry import PluginRegistry


@pytest.fixture
def registry() -> PluginRegistry:
    return toy_registry()
