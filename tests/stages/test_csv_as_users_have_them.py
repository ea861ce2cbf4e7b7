"""CSV files as users have them: mixed or CR line endings, a BOM, trailing delimiters, quoted newlines."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.stages.conftest import Make, error_rows, run_origin, table_of

from flowport.errors import StageError
from flowport.stages.files.csv_origin import CsvFileOrigin


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return name


def test_mixed_crlf_and_lf_endings_load_every_row(make: Make, tmp_path: Path) -> None:
    path = _write(tmp_path, "mixed.csv", b'id,name\r\n1,a\r\n2,b\n3,"multi\nline"\r\n4,d\n')
    batches, errors = run_origin(make(CsvFileOrigin, path=path))
    assert table_of(batches).to_pydict() == {
        "id": ["1", "2", "3", "4"],
        "name": ["a", "b", "multi\nline", "d"],
    }
    assert errors == []


def test_malformed_rows_of_a_mixed_file_are_error_records_with_the_users_file_and_line(
    make: Make, tmp_path: Path
) -> None:
    path = _write(tmp_path, "m.csv", b"id,name,total\r\n1,a,10\r\n2,b,20\n3,c,30,extra\n4,d\r\n")
    batches, errors = run_origin(make(CsvFileOrigin, path=path))
    assert table_of(batches).column("id").to_pylist() == ["1", "2"]
    rows = error_rows(errors)
    assert [(r["line"], r["raw"]) for r in rows] == [(4, "3,c,30,extra"), (5, "4,d")]
    assert all(r["file"] == str(tmp_path / "m.csv") for r in rows)
    assert rows[0]["message"] == "m.csv line 4: expected 3 columns, found 4"


def test_cr_only_endings_and_a_bom_read_cleanly(make: Make, tmp_path: Path) -> None:
    cr = _write(tmp_path, "cr.csv", b"id,name\r1,x\r2,y\r")
    bom = _write(tmp_path, "bom.csv", b"\xef\xbb\xbfid,name\n1,x\n")
    assert table_of(run_origin(make(CsvFileOrigin, path=cr))[0]).to_pydict() == {
        "id": ["1", "2"],
        "name": ["x", "y"],
    }
    assert table_of(run_origin(make(CsvFileOrigin, path=bom))[0]).to_pydict() == {"id": ["1"], "name": ["x"]}


def test_a_mix_after_the_first_mib_is_a_clear_error_with_its_line_or_read_when_asked(
    make: Make, tmp_path: Path
) -> None:
    lines = b"".join(b"%d,value%d\n" % (i, i) for i in range(1, 120_001))  # > 1 MiB of LF
    path = _write(tmp_path, "late.csv", b"id,name\n" + lines + b"120001,x\r\n120002,y\r\n")
    with pytest.raises(StageError) as caught:
        run_origin(make(CsvFileOrigin, path=path))
    message = caught.value.message
    assert "late.csv" in message and "from line 120002" in message and "normalize_line_endings" in message
    assert "strict_mode" not in message
    batches, errors = run_origin(make(CsvFileOrigin, path=path, normalize_line_endings=True))
    assert table_of(batches).num_rows == 120_002 and errors == []


def test_a_file_of_several_read_buffers_loads_every_row_and_a_line_over_2_mb_is_an_error_record(
    make: Make, tmp_path: Path
) -> None:
    # DuckDB reads 8 MB at a time (csv_origin._BUFFER_BYTES): rows cross the buffers' edges, a
    # 1.5 MB value loads, a 3 MB line is refused with its line number (the longest line it reads
    # is 2 MB, whatever the buffer), and a malformed row far into the file keeps its line too.
    rows = b"".join(b"%d,name %d\n" % (i, i) for i in range(1, 1_000_001))  # ~14 MB
    data = b"id,name\n1000001,short\n1000002," + b"x" * 1_500_000 + b"\n1000003," + b"y" * 3_000_000
    data += b"\n" + rows + b"1000004,bad,extra\n1000005,end\n"
    path = _write(tmp_path, "big.csv", data)
    batches, errors = run_origin(make(CsvFileOrigin, path=path))
    loaded = table_of(batches)
    ids = loaded.column("id").to_pylist()
    assert len(ids) == 1_000_003
    assert ids[:2] == ["1000001", "1000002"] and ids[-1] == "1000005"
    assert len(loaded.column("name")[1].as_py()) == 1_500_000
    failed = error_rows(errors)
    assert [r["line"] for r in failed] == [4, 1_000_005]
    assert failed[1]["raw"] == "1000004,bad,extra"
