"""The store's revision check reads the head from the migration files, without importing Alembic.

``require_head`` runs before a process's first transaction (every ``flowport
run`` that looks a connection up, every job process): it must agree with
Alembic about the head and must not pay Alembic's import for a current
database. Outdated and unknown revisions are covered in test_store_schema.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from flowport.errors import StoreNotReady
from flowport.store import schema
from flowport.store.database import get_engine


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    assert schema._head_from_files() == ScriptDirectory.from_config(config).get_current_head()
    assert schema.head_revision() == ScriptDirectory.from_config(config).get_current_head()


def test_a_migration_the_files_do_not_state_plainly_leaves_the_head_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_a.py").write_text('revision: str = "0001"\ndown_revision: str | None = None\n')
    (versions / "0002_b.py").write_text('revision = "0002"\ndown_revision = "0001"\n')
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", tmp_path)
    assert schema._head_from_files() == "0002"
    # Two heads (a branch): not for this reader to decide.
    (versions / "0003_c.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
    assert schema._head_from_files() is None
    # Not a literal.
    (versions / "0003_c.py").write_text('revision = "0003"\ndown_revision = PREVIOUS\n')
    assert schema._head_from_files() is None
    # A merge of two heads is one head again.
    (versions / "0003_c.py").write_text('revision = "0003"\ndown_revision = ("0001", "0002")\n')
    assert schema._head_from_files() == "0003"


def test_current_revision_reads_the_version_row(store: str) -> None:
    assert schema.current_revision(store) == schema.head_revision()
    with get_engine(store).begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    assert schema.current_revision(store) is None


def test_several_version_rows_are_refused_clearly(store: str) -> None:
    with get_engine(store).begin() as connection:
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    with pytest.raises(StoreNotReady, match="several revisions"):
        schema.require_head(store)


_PROBE = """
import json, sys
from flowport.store.schema import require_head
url = sys.argv[1]
before = "alembic" in sys.modules
revision = require_head(url)
print(json.dumps({"revision": revision, "before": before, "after": "alembic" in sys.modules}))
"""


def test_require_head_of_a_current_store_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flowport.db'}"
    schema.upgrade(url)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"revision": schema.head_revision(), "before": False, "after": False}
