"""Pagination styles of the HTTP API origin and the page driver (private).

A :class:`Paginator` turns one style's settings into page requests and
decides when the last page was seen:

* ``none`` — one request;
* ``next_link`` — follow the URL at ``next_field`` (or the ``Link: rel=next``
  header when ``next_field`` is empty) until it is null or empty;
* ``page_number`` — ``page_param`` from ``start_page`` up, until a page is
  empty or the number of pages at ``total_pages_field`` (or ``total_field``
  records over ``page_size``) is reached;
* ``offset`` — ``offset_param``/``limit_param`` in steps of ``limit`` until
  a page is short or ``total_field`` records were fetched;
* ``cursor`` — send the value at ``cursor_field`` as ``cursor_param`` until
  the response has none.

:func:`iter_pages` fetches the pages and yields them strictly in order. The
numbered styles (page number, offset) fetch up to ``concurrency`` pages at
a time once the last page is known (from the first response's total or
from ``max_pages``); the linked styles cannot know a page before the
previous one arrived and are sequential.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin

from pydantic import model_validator

from flowport.plugins.contract import StageConfig, setting

__all__ = [
    "MISSING",
    "Page",
    "PageRequest",
    "PaginationConfig",
    "PaginationError",
    "Paginator",
    "iter_pages",
    "lookup",
    "paginator_for",
]

PaginationStyle = Literal["none", "next_link", "page_number", "offset", "cursor"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`lookup` returns when a path is not in the document."""


def lookup(document: Any, path: str) -> Any:
    """The value at dot path ``path`` (``data.items``; digits index lists), or :data:`MISSING`.

    An empty path is the document itself.
    """
    current = document
    for part in (p for p in path.split(".") if p) if path else ():
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


class PaginationError(Exception):
    """The API's pagination cannot be followed (a loop, a link that is not a URL, ...)."""


class PaginationConfig(StageConfig):
    """How the origin walks through the pages of an API."""

    style: PaginationStyle = setting(
        "none",
        label="Style",
        description="none: one request; next_link: follow a next URL in the body; page_number: "
        "page=1,2,...; offset: offset=0,limit,...; cursor: send the cursor the previous response gave.",
    )
    next_field: str = setting(
        "next",
        label="Next link field",
        description="next_link: dot path of the next page's URL (absolute or relative) in the body; "
        "null or empty ends the pages. Empty: use the Link header (rel=next).",
    )
    page_param: str = setting(
        "page", label="Page parameter", description="page_number: query parameter of the page number."
    )
    start_page: int = setting(1, label="First page", description="page_number: number of the first page.")
    page_size_param: str | None = setting(
        None,
        label="Page size parameter",
        description="page_number: query parameter of the page size (set together with page size).",
    )
    page_size: int | None = setting(
        None, label="Page size", description="page_number: records per page to ask for.", ge=1
    )
    total_pages_field: str | None = setting(
        None,
        label="Total pages field",
        description="page_number: dot path of the number of pages in the body; lets the pages "
        "after the first be fetched concurrently.",
    )
    offset_param: str = setting(
        "offset",
        label="Offset parameter",
        description="offset: query parameter of the first record's offset.",
    )
    limit_param: str = setting(
        "limit", label="Limit parameter", description="offset: query parameter of the records per page."
    )
    limit: int = setting(100, label="Limit", description="offset: records per page to ask for.", ge=1)
    total_field: str | None = setting(
        None,
        label="Total records field",
        description="offset (and page_number with a page size): dot path of the total number of "
        "records in the body; the pages end there and can be fetched concurrently.",
    )
    cursor_param: str = setting(
        "cursor", label="Cursor parameter", description="cursor: query parameter that carries the cursor."
    )
    cursor_field: str = setting(
        "next_cursor",
        label="Cursor field",
        description="cursor: dot path of the next cursor in the body; missing, null or empty ends the pages.",
    )
    max_pages: int | None = setting(
        None,
        label="Maximum pages",
        description="Stop after this many pages (all styles). With page_number or offset it also "
        "lets pages be fetched concurrently when the API reports no total.",
        ge=1,
    )

    @model_validator(mode="after")
    def _page_size_with_its_parameter(self) -> PaginationConfig:
        # A page size alone is fine (it converts total_field into pages); a parameter needs a size.
        if self.page_size_param is not None and self.page_size is None:
            raise ValueError("page_size_param needs page_size")
        return self


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: its URL, its query parameters and its position (0 = first page)."""

    url: str
    params: dict[str, str]
    number: int


@dataclass
class Page:
    """One fetched page: the request, the final URL, the JSON body and its records."""

    request: PageRequest
    url: str
    body: Any
    records: list[Any]
    link_next: str | None = None


class Paginator(ABC):
    """Page requests and the end of the pages for one pagination style."""

    numbered: ClassVar[bool] = False
    """True when any page's request is known in advance (page number, offset)."""

    def __init__(self, config: PaginationConfig, url: str, params: Mapping[str, str]) -> None:
        self.config = config
        self.url = url
        self.params = dict(params)

    def first(self) -> PageRequest:
        """The first page's request."""
        return self.at(0) if self.numbered else PageRequest(self.url, dict(self.params), 0)

    @abstractmethod
    def following(self, page: Page) -> PageRequest | None:
        """The request of the page after ``page``, or None when ``page`` was the last."""

    def at(self, number: int) -> PageRequest:
        """The request of page ``number`` (numbered styles only)."""
        raise NotImplementedError

    def last_number(self, page: Page) -> int | None:
        """The last page's number as far as ``page`` tells (numbered styles), else None."""
        return None

    def is_final(self, page: Page) -> bool:
        """True when no page can follow ``page`` (numbered styles; the linked ones learn it in
        :meth:`following`)."""
        return False


class _Single(Paginator):
    def following(self, page: Page) -> PageRequest | None:
        return None

    def is_final(self, page: Page) -> bool:
        return True


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or value is MISSING or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Numbered(Paginator):
    numbered = True

    def following(self, page: Page) -> PageRequest | None:
        if self.is_final(page):
            return None
        return self.at(page.request.number + 1)

    def is_final(self, page: Page) -> bool:
        last = self.last_number(page)
        return self._ends(page) or (last is not None and page.request.number >= last)

    @abstractmethod
    def _ends(self, page: Page) -> bool: ...


class _PageNumber(_Numbered):
    def at(self, number: int) -> PageRequest:
        params = dict(self.params)
        params[self.config.page_param] = str(self.config.start_page + number)
        if self.config.page_size_param and self.config.page_size:
            params[self.config.page_size_param] = str(self.config.page_size)
        return PageRequest(self.url, params, number)

    def last_number(self, page: Page) -> int | None:
        if self.config.total_pages_field:
            pages = _count(lookup(page.body, self.config.total_pages_field))
            if pages is not None:
                return pages - 1
        if self.config.total_field and self.config.page_size:
            total = _count(lookup(page.body, self.config.total_field))
            if total is not None:
                return math.ceil(total / self.config.page_size) - 1
        return None

    def _ends(self, page: Page) -> bool:
        return not page.records


class _Offset(_Numbered):
    def at(self, number: int) -> PageRequest:
        params = dict(self.params)
        params[self.config.offset_param] = str(number * self.config.limit)
        params[self.config.limit_param] = str(self.config.limit)
        return PageRequest(self.url, params, number)

    def last_number(self, page: Page) -> int | None:
        if self.config.total_field:
            total = _count(lookup(page.body, self.config.total_field))
            if total is not None:
                return math.ceil(total / self.config.limit) - 1
        return None

    def _ends(self, page: Page) -> bool:
        return len(page.records) < self.config.limit


class _NextLink(Paginator):
    def __init__(self, config: PaginationConfig, url: str, params: Mapping[str, str]) -> None:
        super().__init__(config, url, params)
        self._seen: set[str] = set()

    def following(self, page: Page) -> PageRequest | None:
        link = lookup(page.body, self.config.next_field) if self.config.next_field else page.link_next
        if link is MISSING or link is None or link == "":
            return None
        if not isinstance(link, str):
            raise PaginationError(
                f"the next link at '{self.config.next_field}' is a {type(link).__name__}, not a URL"
            )
        url = urljoin(page.url, link)
        self._seen.add(page.url)
        if url in self._seen:
            raise PaginationError(f"the next link points back to a page already fetched ({url})")
        # The next link carries its own query; the configured parameters were for the first page.
        return PageRequest(url, {}, page.request.number + 1)


class _Cursor(Paginator):
    def __init__(self, config: PaginationConfig, url: str, params: Mapping[str, str]) -> None:
        super().__init__(config, url, params)
        self._seen: set[str] = set()

    def following(self, page: Page) -> PageRequest | None:
        cursor = lookup(page.body, self.config.cursor_field)
        if cursor is MISSING or cursor is None or cursor == "":
            return None
        if isinstance(cursor, (dict, list)):
            raise PaginationError(f"the cursor at '{self.config.cursor_field}' is not a scalar value")
        value = str(cursor).lower() if isinstance(cursor, bool) else str(cursor)
        if value in self._seen:
            raise PaginationError(f"the API returned the cursor '{value}' twice; stopping a loop")
        self._seen.add(value)
        params = dict(self.params)
        params[self.config.cursor_param] = value
        return PageRequest(self.url, params, page.request.number + 1)


_STYLES: dict[str, type[Paginator]] = {
    "none": _Single,
    "next_link": _NextLink,
    "page_number": _PageNumber,
    "offset": _Offset,
    "cursor": _Cursor,
}


def paginator_for(config: PaginationConfig, url: str, params: Mapping[str, str]) -> Paginator:
    """The paginator of ``config.style`` starting at ``url`` with ``params``."""
    return _STYLES[config.style](config, url, params)


@dataclass
class _Window:
    """Pages requested ahead, in page order."""

    pool: ThreadPoolExecutor
    pending: deque[tuple[int, Future[Page]]] = field(default_factory=deque)

    def close(self) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def iter_pages(
    paginator: Paginator,
    load: Callable[[PageRequest], Page],
    *,
    concurrency: int,
    max_pages: int | None,
    records_wanted: Callable[[], int | None],
    abandon: threading.Event,
) -> Generator[Page, None, None]:
    """The pages in order, fetched by ``load``.

    ``records_wanted`` tells how many more records the consumer still wants
    (None: all), so a preview does not request pages it will not read.
    ``abandon`` is set when the generator ends early or fails, which stops
    requests still running in other threads at their next wait.
    """
    try:
        page = load(paginator.first())
        yield page
        fetched = 1
        if paginator.numbered and concurrency > 1 and not paginator.is_final(page):
            last = paginator.last_number(page)
            if max_pages is not None:
                last = max_pages - 1 if last is None else min(last, max_pages - 1)
            if last is not None:
                yield from _concurrently(paginator, load, page, last, concurrency, records_wanted)
                return
        while max_pages is None or fetched < max_pages:
            request = paginator.following(page)
            if request is None:
                return
            page = load(request)
            yield page
            fetched += 1
    finally:
        abandon.set()


def _concurrently(
    paginator: Paginator,
    load: Callable[[PageRequest], Page],
    first: Page,
    last: int,
    concurrency: int,
    records_wanted: Callable[[], int | None],
) -> Iterator[Page]:
    per_page = max(1, len(first.records))
    window = _Window(ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="flowport-http"))
    number = first.request.number + 1
    try:
        while True:
            size = concurrency
            wanted = records_wanted()
            if wanted is not None:
                size = max(1, min(concurrency, math.ceil(wanted / per_page)))
            while len(window.pending) < size and number <= last:
                window.pending.append((number, window.pool.submit(load, paginator.at(number))))
                number += 1
            if not window.pending:
                return
            _, future = window.pending.popleft()
            page = future.result()
            yield page
            if paginator.is_final(page):
                return
    finally:
        window.close()
