"""HTTP API origin: records from a paginated JSON API.

The origin GETs a JSON API page after page (no pagination, a next link,
page numbers, offsets or cursors), takes the records at ``records_path`` of
each body and emits them as Arrow record batches, strictly in page order.
Credentials come from an ``http`` connection (none, basic, bearer, API key
or Hawk signing, as in the seed's dataset pipelines); they are sent only to
the configured URL's origin and never appear in a log, an error or a record.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import model_validator

from flowport import __version__
from flowport.connections.spec import ConnectionSpec
from flowport.errors import FlowportError, StageError
from flowport.plugins.contract import Origin, StageConfig, StageOutput, setting
from flowport.stages.http._pagination import (
    MISSING,
    Page,
    PageRequest,
    PaginationConfig,
    PaginationError,
    iter_pages,
    lookup,
    paginator_for,
)

if TYPE_CHECKING:
    # httpx and mohawk (through _auth and _fetch) load when a run opens the stage, not when the plugin
    # is listed: `flowport stages list` and `flowport validate` stay light.
    from flowport.stages.http._auth import RequestAuth

__all__ = ["HttpApiOrigin", "HttpApiOriginConfig", "PaginationConfig"]

ParamValue = str | int | float | bool


def _is_absolute(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


class HttpApiOriginConfig(StageConfig):
    """Settings of the HTTP API origin."""

    connection: str | None = setting(
        None,
        label="Connection",
        description="uuid or name of an http connection: its params.baseUrl (or host) is the base URL "
        "and its credentials authenticate every request (none, basic, bearer, api_key, hawk).",
    )
    url: str = setting(
        "",
        label="URL",
        description="Absolute URL, or a path appended to the connection's base URL "
        "(e.g. v4/dataset/omis-dataset). Empty: the base URL itself.",
    )
    params: dict[str, ParamValue] = setting(
        {}, label="Query parameters", description="Query parameters added to the first request."
    )
    headers: dict[str, str] = setting(
        {},
        label="Headers",
        description="Extra request headers (sent only to the URL's host; authentication headers "
        "come from the connection).",
    )
    records_path: str = setting(
        "",
        label="Records path",
        description="Dot path to the list of records in the JSON body (e.g. results or data.items); "
        "empty: the body itself is the list.",
    )
    pagination: PaginationConfig = setting(
        PaginationConfig(), label="Pagination", description="How to walk through the pages."
    )
    timeout: float = setting(30.0, label="Timeout", description="Seconds to wait for each request.", gt=0)
    max_retries: int = setting(
        5,
        label="Maximum retries",
        description="Retries of a request after a 408, 429, 5xx, timeout or connection error, with "
        "exponential backoff and jitter (Retry-After honoured).",
        ge=0,
        le=20,
    )
    retry_backoff: float = setting(
        0.5,
        label="Retry backoff",
        description="Seconds before the first retry; doubled for each further retry (at most 60 s).",
        ge=0,
        le=60,
    )
    rate_limit: float | None = setting(
        None,
        label="Rate limit",
        description="Maximum requests per second (retries included); empty: no limit.",
        gt=0,
    )
    concurrency: int = setting(
        4,
        label="Concurrency",
        description="Pages fetched at the same time by the page_number and offset styles once the "
        "number of pages is known; records still come out in page order.",
        ge=1,
        le=16,
    )

    @model_validator(mode="after")
    def _url_is_reachable(self) -> HttpApiOriginConfig:
        if self.connection is None and not _is_absolute(self.url):
            raise ValueError("url must be an absolute http(s) URL when no connection is set")
        return self


def _base_url(spec: ConnectionSpec) -> str:
    base = str(spec.params.get("baseUrl") or spec.host or "").strip()
    if not base:
        raise ValueError(f"connection '{spec.name}' has neither params.baseUrl nor a host")
    if "://" not in base:
        # A bare host name: HTTPS, the only sensible default for credentials.
        base = f"https://{base}" + (f":{spec.port}" if spec.port else "")
    return base


def _param_text(value: ParamValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _json_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _table_of(rows: list[dict[str, Any]], warn: Any) -> pa.Table:
    """Rows as a table; nested objects become structs, keys missing in a row become nulls.

    A field whose values have incompatible types (a number here, an object
    there) is kept as JSON text rather than failing the run.
    """
    try:
        array = pa.array(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        keys = list(dict.fromkeys(k for row in rows for k in row))
        mixed = []
        for key in keys:
            try:
                pa.array([row.get(key) for row in rows])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                mixed.append(key)
        warn(mixed)
        fixed = set(mixed)
        rows = [{k: (_json_text(v) if k in fixed else v) for k, v in row.items()} for row in rows]
        array = pa.array(rows)
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(array)])


class HttpApiOrigin(Origin[HttpApiOriginConfig]):
    """Reads the records of a paginated JSON API.

    Transient failures (408, 429, 5xx, timeouts, connection errors) are
    retried up to ``max_retries`` times; any other 4xx, exhausted retries, a
    body that is not JSON or a missing ``records_path`` fail the stage with
    the URL (credentials removed), the status and a body excerpt. A 404 for
    a page after the first ends ``page_number`` pagination (as Django REST
    framework answers past the last page).

    Records are batched up to ``context.batch_size`` rows; the schema is
    inferred per batch and unified with the previous batches' (a column
    seen before but absent now is null; int widens to double), so later
    batches carry every column seen so far.
    """

    name = "http_api_origin"
    label = "HTTP API"
    description = (
        "Reads records from a paginated JSON HTTP API (next link, page number, offset or cursor), "
        "with retries, rate limiting, concurrent page fetches and basic, bearer, API key or Hawk auth."
    )
    config_model = HttpApiOriginConfig
    restrictions = frozenset({"network"})

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        """Resolve the connection, the URL and the credentials; create the HTTP client."""
        import httpx

        from flowport.stages.http._auth import CredentialError, auth_for
        from flowport.stages.http._fetch import Fetcher, RetryPolicy, TokenBucket, origin_of

        config = self.config
        spec = self._connection()
        try:
            self._auth: RequestAuth = auth_for(spec)
            url = config.url.strip()
            if not _is_absolute(url):
                if spec is None:
                    raise ValueError("url must be absolute when no connection is set")
                base = _base_url(spec)
                url = base.rstrip("/") + "/" + url.lstrip("/") if url else base
        except (CredentialError, ValueError) as exc:
            raise StageError(self.context.stage_name, str(exc), code="HTTP_CONFIG") from None
        self._url = url
        self._params = {k: _param_text(v) for k, v in config.params.items()}
        self._abandon = threading.Event()
        self._schema: pa.Schema | None = None
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=config.concurrency, max_keepalive_connections=config.concurrency
            ),
            headers={"User-Agent": f"flowport/{__version__}", "Accept": "application/json"},
        )
        self._fetcher = Fetcher(
            stage=self.context.stage_name,
            client=self._client,
            auth=self._auth,
            trusted_origin=origin_of(url),
            headers=config.headers,
            timeout=config.timeout,
            retry=RetryPolicy(config.max_retries, config.retry_backoff),
            limiter=TokenBucket(config.rate_limit) if config.rate_limit else None,
            logger=self.context.logger,
            should_stop=lambda: self.context.cancelled or self._abandon.is_set(),
            connection_name=spec.name if spec is not None else None,
        )

    def close(self) -> None:
        """Stop background requests and close the HTTP client (harmless when called again)."""
        abandon = getattr(self, "_abandon", None)
        if abandon is not None:
            abandon.set()
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def _connection(self) -> ConnectionSpec | None:
        ref = self.config.connection
        if not ref:
            return None
        stage = self.context.stage_name
        lookup_ = self.context.resources.get("connections")
        if lookup_ is None:
            raise StageError(stage, f"connection '{ref}' is configured but this run provides no connections")
        try:
            spec = lookup_.get(ref)
        except FlowportError as exc:
            raise StageError(stage, f"connection '{ref}': {exc.message}", code="HTTP_CONFIG") from None
        if not isinstance(spec, ConnectionSpec):
            raise StageError(stage, f"connection '{ref}' could not be resolved", code="HTTP_CONFIG")
        if spec.vendor != "http":
            raise StageError(
                stage, f"connection '{spec.name}' is a {spec.vendor} connection, not http", code="HTTP_CONFIG"
            )
        return spec

    # -- reading -------------------------------------------------------------
    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Fetch the pages and yield their records as batches, in page order."""
        from flowport.stages.http._fetch import Stopped, safe_url

        if not hasattr(self, "_fetcher"):
            self.open()
        context = self.context
        limit = context.record_limit
        if limit is not None and limit <= 0:
            return
        size = max(1, context.batch_size)
        rows: list[dict[str, Any]] = []
        produced = 0
        pages = 0

        def records_wanted() -> int | None:
            return None if limit is None else max(0, limit - produced - len(rows))

        pagination = self.config.pagination
        pager = iter_pages(
            paginator_for(pagination, self._url, self._params),
            self._load,
            concurrency=self.config.concurrency,
            max_pages=pagination.max_pages,
            records_wanted=records_wanted,
            abandon=self._abandon,
        )
        try:
            for page in pager:
                pages += 1
                if context.cancelled:
                    return
                records = page.records
                wanted = records_wanted()
                if wanted is not None:
                    records = records[:wanted]
                rows.extend(records)
                while len(rows) >= size:
                    yield self._batch(rows[:size])
                    produced += size
                    del rows[:size]
                    if context.cancelled:
                        return
                if records_wanted() == 0:
                    break
            if rows and not context.cancelled:
                yield self._batch(rows)
                produced += len(rows)
        except Stopped:
            return
        except PaginationError as exc:
            raise StageError(
                context.stage_name, self._fetcher.scrub(str(exc)), code="HTTP_PAGINATION"
            ) from None
        finally:
            pager.close()
        context.logger.info(
            "%s: %d records from %d pages (%d requests) of %s",
            context.stage_name,
            produced,
            pages,
            self._fetcher.requests,
            self._fetcher.scrub(safe_url(self._url)),
        )

    def _load(self, request: PageRequest) -> Page:
        end_on_404 = self.config.pagination.style == "page_number" and request.number > 0
        fetched = self._fetcher.get_json(request.url, request.params, none_on_404=end_on_404)
        if fetched is None:
            self.context.logger.info(
                "%s: page %d answered 404; taking it as the end of the pages",
                self.context.stage_name,
                request.number + 1,
            )
            return Page(request, request.url, None, [])
        return Page(
            request, fetched.url, fetched.body, self._records(fetched.body, fetched.url), fetched.link_next
        )

    def _records(self, body: Any, url: str) -> list[dict[str, Any]]:
        if body is None:
            return []
        from flowport.stages.http._fetch import safe_url

        path = self.config.records_path
        value = lookup(body, path)
        shown = self._fetcher.scrub(safe_url(url))
        if value is MISSING:
            keys = (
                f"; its top-level keys are {', '.join(map(str, list(body)[:20]))}"
                if isinstance(body, dict)
                else ""
            )
            raise StageError(
                self.context.stage_name,
                f"records_path '{path}' is not in the response of GET {shown}{keys}",
                code="HTTP_RECORDS_PATH",
            )
        if value is None:
            return []
        if isinstance(value, dict):
            return [value]
        if not isinstance(value, list):
            where = f"'{path}'" if path else "the body"
            raise StageError(
                self.context.stage_name,
                f"{where} of GET {shown} is a {type(value).__name__}, not a list of records "
                "(set records_path to the list)",
                code="HTTP_RECORDS_PATH",
            )
        return [r if isinstance(r, dict) else {"value": r} for r in value]

    def _batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        def warn(fields: list[str]) -> None:
            self.context.logger.warning(
                "%s: field(s) %s hold values of different types; kept as JSON text",
                self.context.stage_name,
                ", ".join(fields),
            )

        try:
            table = _table_of(rows, warn)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
            raise StageError(
                self.context.stage_name,
                f"the records cannot be converted to columns: {exc}",
                code="HTTP_SCHEMA",
            ) from None
        if self._schema is not None:
            table = self._unified(table, self._schema)
        self._schema = table.schema
        # One chunk per column after combine_chunks, hence exactly one batch.
        (batch,) = table.combine_chunks().to_batches()
        return batch

    def _unified(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        """``table`` in the schema of every batch so far (columns added, types widened)."""
        try:
            unified = pa.unify_schemas([schema, table.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # A field changed type between batches: convert this batch's values to the earlier type.
            for index, field in enumerate(table.schema):
                earlier = schema.field(field.name) if field.name in schema.names else None
                if earlier is None or earlier.type == field.type:
                    continue
                try:
                    pa.unify_schemas([pa.schema([earlier]), pa.schema([field])], promote_options="permissive")
                    continue
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    pass
                try:
                    column = table.column(index).cast(earlier.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    raise StageError(
                        self.context.stage_name,
                        f"field '{field.name}' was {earlier.type} in earlier records but is {field.type} "
                        f"in later ones and cannot be converted ({exc})",
                        code="HTTP_SCHEMA",
                    ) from None
                table = table.set_column(index, pa.field(field.name, earlier.type), column)
            unified = pa.unify_schemas([schema, table.schema], promote_options="permissive")
        if table.schema.equals(unified):
            return table
        return pa.concat_tables([unified.empty_table(), table], promote_options="permissive")
