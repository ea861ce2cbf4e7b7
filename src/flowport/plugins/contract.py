"""The stage plugin contract: what an origin, processor, destination,
executor or error stage must provide.

A plugin is a class with a ``name``, a ``label``, a ``kind``, a
``description`` and a typed configuration model (``config_model``) whose
fields carry label, description and default (use :func:`setting`). The
engine instantiates a plugin once per stage per run with the validated
configuration and a :class:`StageContext`.

Data moves as ``pyarrow.RecordBatch``. Columns whose name starts with
``__fp_`` belong to the engine (record lineage); processors should pass
them through unchanged and destinations never write them
(:func:`visible_columns`).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from flowport.errors import StageError
from flowport.model.catalog import PathUse
from flowport.model.flow import StageKind
from flowport.plugins.file_roots import FileRoots, PathNotAllowed

__all__ = [
    "HIDDEN_PREFIX",
    "ROW_ID",
    "Destination",
    "ErrorBatch",
    "ErrorSink",
    "Executor",
    "FusedSql",
    "MemoryStageState",
    "Origin",
    "Processor",
    "StageConfig",
    "StageContext",
    "StageOutput",
    "StagePlugin",
    "StageStateStore",
    "setting",
    "visible_columns",
]

HIDDEN_PREFIX = "__fp_"
ROW_ID = "__fp_rid"

C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base of every stage configuration model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def setting(default: Any = ..., *, label: str, description: str, **kwargs: Any) -> Any:
    """A configuration field with its label (``title`` in the JSON Schema), description and default."""
    return Field(default, title=label, description=description, **kwargs)


class StageStateStore(Protocol):
    """Where the stages of one flow keep what they need between runs (offsets, checkpoints).

    Keyed by the flow (the store is made for one flow), the stage's name and
    a partition key; a state is a JSON object. The instance keeps it in its
    metadata store, so any worker can resume any job.
    """

    def load(self, stage: str, partition: str = "") -> dict[str, Any] | None:
        """The state ``stage`` saved last, or None."""
        ...

    def save(
        self, stage: str, state: Mapping[str, Any], partition: str = "", run_id: str | None = None
    ) -> None:
        """Replace the state of ``stage``."""
        ...


class MemoryStageState:
    """A :class:`StageStateStore` in memory: for one process (tests, a bare stage harness)."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], dict[str, Any]] = {}

    def load(self, stage: str, partition: str = "") -> dict[str, Any] | None:
        """The state saved last in this process, or None."""
        found = self.states.get((stage, partition))
        return dict(found) if found is not None else None

    def save(
        self, stage: str, state: Mapping[str, Any], partition: str = "", run_id: str | None = None
    ) -> None:
        """Keep ``state`` for ``stage``."""
        self.states[(stage, partition)] = dict(state)


@dataclass
class StageContext:
    """What the engine hands a stage for one run (or preview)."""

    stage_name: str
    batch_size: int = 65536
    preview: bool = False
    record_limit: int | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    run_id: str = "local"
    cancel_event: threading.Event = field(default_factory=threading.Event)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("flowport.stage"))
    resources: Mapping[str, Any] = field(default_factory=dict)
    file_roots: FileRoots = field(default_factory=FileRoots)
    state_store: StageStateStore = field(default_factory=MemoryStageState)
    partition: str = ""

    def load_state(self) -> dict[str, Any] | None:
        """What this stage (and partition) saved in an earlier run of its flow, or None."""
        return self.state_store.load(self.stage_name, self.partition)

    def save_state(self, state: Mapping[str, Any]) -> None:
        """Keep ``state`` for the next run of this stage (call it only once the run's data is safe)."""
        self.state_store.save(self.stage_name, state, self.partition, self.run_id)

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled or failed elsewhere: stop producing."""
        return self.cancel_event.is_set()

    def resolve_path(self, path: str | Path) -> Path:
        """The real path of a configured path (relative ones start at the run's base directory).

        Raises:
            StageError (code ``PATH_OUTSIDE_ROOTS`` or ``PATH_PROTECTED``): the
            path resolves outside the run's file roots, or to a file of the
            instance itself. Checked when the stage opens the file, so a stored
            document edited past validation is refused too.
        """
        try:
            return self.file_roots.check(path, base_dir=self.base_dir, what="the path")
        except PathNotAllowed as exc:
            raise StageError(self.stage_name, exc.message, code=exc.code) from None


@dataclass
class ErrorBatch:
    """Records a stage could not handle, each with an error code and message.

    ``records`` holds the records as the stage saw them (including the
    engine's ``__fp_rid`` lineage column when it was present), and
    ``codes``/``messages`` hold one value per record.
    """

    records: pa.Table
    codes: pa.Array[Any]
    messages: pa.Array[Any]

    @classmethod
    def uniform(cls, records: pa.Table | pa.RecordBatch, code: str, message: str) -> ErrorBatch:
        """Every record failed for the same reason."""
        table = records if isinstance(records, pa.Table) else pa.Table.from_batches([records])
        n = table.num_rows
        return cls(table, pa.array([code] * n, pa.string()), pa.array([message] * n, pa.string()))

    @property
    def num_rows(self) -> int:
        """How many records failed."""
        return int(self.records.num_rows)


@dataclass
class StageOutput:
    """What a stage produced from one input batch: records and/or error records."""

    records: pa.RecordBatch | pa.Table | None = None
    errors: ErrorBatch | None = None


@dataclass(frozen=True)
class FusedSql:
    """A processor written as one DuckDB SELECT over its input, for fusion.

    The engine may fuse an origin that reads through DuckDB with the
    processors after it into a single query (see ``flowport.engine.fusion``).
    ``query`` selects the stage's visible output ``columns``, every column
    named in ``carry`` unchanged, and the stage's control columns:

    * ``error_column``: per row an error message, or NULL when the row is fine;
    * ``input_column``: where ``error_column`` is not NULL, the record as the
      stage received it (a STRUCT), else NULL;
    * ``keep_column``: a filter's verdict, TRUE/FALSE, or NULL when it could
      not be decided in SQL (NULL condition or an error); the engine then asks
      :meth:`Processor.process` about those rows, so results and error
      records are exactly those of an unfused run.
    """

    query: str
    columns: list[str]
    error_column: str | None = None
    error_code: str = "STAGE_RECORD_ERROR"
    input_column: str | None = None
    keep_column: str | None = None


def visible_columns(data: pa.RecordBatch | pa.Table) -> pa.Table:
    """``data`` without the engine's hidden ``__fp_`` columns, as a table."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    hidden = [n for n in table.column_names if n.startswith(HIDDEN_PREFIX)]
    return table.drop_columns(hidden) if hidden else table


class StagePlugin(ABC, Generic[C]):
    """Base of every stage plugin."""

    name: ClassVar[str]
    label: ClassVar[str]
    kind: ClassVar[StageKind]
    description: ClassVar[str] = ""
    config_model: ClassVar[type[StageConfig]] = StageConfig
    #: What the stage may do beyond transforming records: ``read-filesystem``,
    #: ``write-filesystem``, ``execute-code``, ``execute-sql``, ``network``
    #: (:data:`flowport.model.catalog.RESTRICTIONS`). Using the stage needs the
    #: matching permissions.
    restrictions: ClassVar[frozenset[str]] = frozenset()
    #: The settings that name a file or folder, with ``"read"`` or ``"write"``:
    #: validation checks them against the instance's file roots.
    path_settings: ClassVar[Mapping[str, PathUse]] = {}

    def __init__(self, config: C, context: StageContext) -> None:
        self.config = config
        self.context = context

    def open(self) -> None:
        """Acquire resources before the first batch."""

    def close(self) -> None:
        """Release resources; called once whatever happened."""


class Origin(StagePlugin[C]):
    """Reads records from outside. Yields batches, or StageOutput when some input was bad."""

    kind = StageKind.ORIGIN

    def output_schema(self) -> pa.Schema | None:
        """The schema of the records this origin will produce, when known without reading them.

        Called after :meth:`open`. Validation binds the SQL of the stages
        downstream against it (``SQL_INVALID``); None (the default) means
        unknown, and their SQL is checked when it runs.
        """
        return None

    def fusable_columns(self) -> list[str] | None:
        """Columns of the DuckDB SELECT this origin reads through, or None when it cannot fuse.

        Called after :meth:`open`.
        """
        return None

    def fuse(self, wrap: Callable[[str], str]) -> None:
        """Read ``wrap(select)`` instead of ``select`` (only called when fusable_columns() is not None)."""
        raise NotImplementedError

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Yield record batches of at most ``context.batch_size`` rows.

        In preview (``context.record_limit`` set) stop after that many records.
        Check ``context.cancelled`` between batches. A streaming origin
        (:attr:`streaming`) yields one micro-batch per run: what arrived, up to
        ``batch_size`` records or until its ``batch_wait`` has passed.
        """

    #: A streaming origin reads without end: a streaming flow's job runs the flow once per
    #: micro-batch, and the origin acknowledges (checkpoints) each one in :meth:`acknowledge`.
    streaming: ClassVar[bool] = False

    def acknowledge(self) -> None:
        """Everything this run read is safe: every destination committed it (and the error stage its errors).

        Called once, after the commit and before :meth:`close`, only when the run
        succeeded: a streaming origin acknowledges its messages or saves its
        offset here, never earlier, so a failed or killed run reads them again
        (at least once). Not called in preview.
        """

    @property
    def exhausted(self) -> bool:
        """True when a streaming origin has nothing more to read, ever (``stop_after_first_batch``)."""
        return False

    def lag(self) -> int | None:
        """How many records wait to be read after the micro-batch just acknowledged (None: unknown).

        Called right after :meth:`acknowledge`; a streaming job shows it live.
        """
        return None

    def reset(self, position: str) -> None:
        """Move a streaming origin's offset while its flow is stopped (called after :meth:`open`).

        ``position`` is ``earliest`` (read everything again), ``latest`` (only what
        arrives from now) or an origin-specific value (a message id, an offset).

        Raises:
            StageError: the origin keeps no offset, or the value is not one it understands.
        """
        raise StageError(self.context.stage_name, f"{self.label} keeps no offset to reset")


class Processor(StagePlugin[C]):
    """Transforms batches. Records it cannot handle go in ``StageOutput.errors``."""

    kind = StageKind.PROCESSOR

    @abstractmethod
    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Transform one batch."""

    def finish(self) -> StageOutput | None:
        """Flush state after the last batch (most processors have none)."""
        return None

    def fused_sql(self, source: str, columns: list[str], carry: list[str], tag: str) -> FusedSql | None:
        """This stage as a DuckDB SELECT over ``(source)``, or None when it cannot be fused.

        ``columns`` are the visible input columns, ``carry`` columns must be
        passed through unchanged, and control columns must be named with the
        prefix ``tag``. Only stateless, row-wise stages can fuse.
        """
        return None

    def finish_batches(self) -> Iterator[StageOutput]:
        """Flush state after the last batch as a stream of outputs.

        The engine calls this; override it (instead of :meth:`finish`) when
        the final output can be large, e.g. a query over the whole input.
        """
        out = self.finish()
        if out is not None:
            yield out


class Destination(StagePlugin[C]):
    """Writes records outside, atomically: nothing is visible before ``commit``."""

    kind = StageKind.DESTINATION
    #: The engine may open this destination in its own thread while the
    #: stages before it already read and transform (its ``open`` connects to
    #: another system). Its ``abort`` and ``close`` must then cope with an
    #: ``open`` that failed or never finished. A destination that offers the
    #: fused plan a ``copy_target`` is always opened before the plan is made.
    opens_while_running: ClassVar[bool] = False

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        """Stage one batch for writing.

        The batch may still carry the engine's hidden ``__fp_`` columns:
        drop them with :func:`visible_columns` before writing.
        """

    @abstractmethod
    def commit(self) -> None:
        """Make everything written visible at once (rename, swap, commit)."""

    @abstractmethod
    def abort(self) -> None:
        """Throw away everything written; the target stays as it was."""


class Executor(StagePlugin[C]):
    """Runs an action (SQL statements, a command) after every destination committed."""

    kind = StageKind.EXECUTOR

    @abstractmethod
    def execute(self) -> None:
        """Run the action."""


class ErrorSink(StagePlugin[C]):
    """Receives error records: a table with ``stage``, ``code``, ``message``,
    ``policy`` columns and a ``record`` struct column."""

    kind = StageKind.ERROR

    @abstractmethod
    def write(self, errors: pa.Table) -> None:
        """Store one batch of error records."""

    def commit(self) -> None:
        """Make stored error records visible (called whether the run succeeded or not)."""


PluginClass = type[StagePlugin[Any]]
PluginFactory = Callable[[], PluginClass]
