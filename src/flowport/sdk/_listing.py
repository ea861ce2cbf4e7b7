"""Lists of SDK objects that can be searched by attribute: ``flows.get(name='x')``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self, TypeVar

from flowport.errors import NotFound

__all__ = ["Listing"]

T = TypeVar("T")


def _matches(item: Any, criteria: dict[str, Any]) -> bool:
    for key, wanted in criteria.items():
        if not hasattr(item, key):
            raise AttributeError(f"{type(item).__name__} has no attribute '{key}' to search by")
        value = getattr(item, key)
        # Ids given as text ('12') match ids held as numbers (12), and uuids match their text.
        if value != wanted and str(value) != str(wanted):
            return False
    return True


class Listing(list[T]):
    """A list of SDK objects with ``get(**attributes)`` and ``get_all(**attributes)``."""

    _what = "object"

    def __init__(self, items: Iterable[T] = ()) -> None:
        super().__init__(items)

    def get_all(self, **criteria: Any) -> Self:
        """Every item whose attributes equal the given values (all of them when none are given)."""
        return type(self)(item for item in self if _matches(item, criteria))

    def get(self, **criteria: Any) -> T:
        """The first item whose attributes equal the given values.

        Raises:
            NotFound: no item matches.
        """
        if not criteria:
            raise ValueError(f"Say which {self._what} to get, e.g. get(name='...')")
        for item in self:
            if _matches(item, criteria):
                return item
        described = ", ".join(f"{key}={value!r}" for key, value in criteria.items())
        raise NotFound(f"No {self._what} with {described}", details=dict(criteria))
