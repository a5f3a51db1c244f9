"""The runner's SQL reader: includes, statement splitting, DDL/DML classification."""

from pathlib import Path

import pytest

from conveyor.errors import DisciplineError
from conveyor.phases import sqlfile
from conveyor.phases.sqlfile import Kind


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_semicolons_inside_quotes_dollar_quotes_and_comments_do_not_split() -> None:
    text = """
    CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $body$
    BEGIN RETURN 'a;b'; END; $body$;
    -- a comment; with a semicolon
    COMMENT ON FUNCTION f() IS 'it''s; fine';
    /* block; comment */ SELECT "odd;name" FROM t;
    """
    statements = sqlfile.split_statements(text)
    assert [s.first_word for s in statements] == ["CREATE", "COMMENT", "SELECT"]


def test_statement_line_numbers_point_at_the_first_line_of_code() -> None:
    statements = sqlfile.split_statements(
        "-- header\n\nCREATE TABLE a (x int);\n\n-- c\nDROP TABLE a;"
    )
    assert [s.line for s in statements] == [3, 6]


def test_include_is_expanded_relative_to_the_including_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "functions/f.1.sql",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
    )
    main = write(
        tmp_path, "phases/1_x/ddl.up.sql", "\\ir ../../functions/f.1.sql\nCREATE TABLE t (x int);\n"
    )
    loaded = sqlfile.read(main)
    assert [s.first_word for s in loaded.statements()] == ["CREATE", "CREATE"]
    assert "FUNCTION f()" in loaded.text


def test_other_psql_meta_commands_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "ddl.up.sql", "\\set ON_ERROR_STOP 1\nCREATE TABLE t (x int);\n")
    with pytest.raises(DisciplineError, match="meta-command"):
        sqlfile.read(path)


def test_checksum_changes_when_an_included_file_changes(tmp_path: Path) -> None:
    inc = write(tmp_path, "f.sql", "CREATE TABLE a (x int);\n")
    main = write(tmp_path, "ddl.up.sql", "\\ir f.sql\n")
    before = sqlfile.read(main).checksum
    inc.write_text("CREATE TABLE a (x bigint);\n")
    assert sqlfile.read(main).checksum != before


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("CREATE TABLE t (x int)", Kind.DDL),
        ("ALTER TABLE t ADD COLUMN y int", Kind.DDL),
        ("GRANT SELECT ON t TO r", Kind.DDL),
        ("INSERT INTO t VALUES (1)", Kind.DML),
        ("WITH x AS (SELECT 1) DELETE FROM t", Kind.DML),
        ("SELECT conveyor.fn_config_set('a.b', 'true')", Kind.DML),
        ("SET search_path = conveyor", Kind.NEUTRAL),
        ("DO $$ BEGIN CREATE ROLE r; END $$", Kind.DDL),
        ("DO $$ BEGIN UPDATE t SET x = 1; END $$", Kind.DML),
        ("DO $$ BEGIN RAISE EXCEPTION 'cannot delete'; END $$", Kind.NEUTRAL),
        ("COMMIT", Kind.TRANSACTION),
    ],
)
def test_statements_are_classified_by_what_they_do(statement: str, kind: Kind) -> None:
    assert sqlfile.split_statements(statement)[0].kind() is kind


def test_a_ddl_file_with_an_insert_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ddl.up.sql", "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n")
    with pytest.raises(DisciplineError, match=r"ddl.up.sql:2: a DML statement \(INSERT\)"):
        sqlfile.check_discipline(sqlfile.read(path), Kind.DDL)


def test_a_data_file_with_ddl_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data.up.sql", "INSERT INTO t VALUES (1);\nALTER TABLE t ADD y int;\n")
    with pytest.raises(DisciplineError, match="a DDL statement"):
        sqlfile.check_discipline(sqlfile.read(path), Kind.DML)


def test_transaction_control_is_refused_in_any_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data.up.sql", "BEGIN;\nINSERT INTO t VALUES (1);\nCOMMIT;\n")
    with pytest.raises(DisciplineError, match="transaction control"):
        sqlfile.check_discipline(sqlfile.read(path), Kind.DML)
