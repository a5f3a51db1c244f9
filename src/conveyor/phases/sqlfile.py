"""Read a phase's SQL file the way psql would (expanding `\\ir`), split it into statements and
classify each one, so the runner can enforce "no file mixes DDL with DML or config writes"."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from conveyor.errors import DisciplineError

_INCLUDE = re.compile(r"^\\(ir|i|include_relative|include)\s+(\S+)\s*$")


class Kind(Enum):
    """What a top-level statement does, for the discipline check."""

    DDL = "ddl"
    DML = "dml"
    NEUTRAL = "neutral"  # SET / RESET: allowed anywhere
    TRANSACTION = "transaction"  # BEGIN / COMMIT / ROLLBACK: only the runner controls these


_DDL_WORDS = {"CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "SECURITY"}
_DML_WORDS = {"INSERT", "UPDATE", "DELETE", "SELECT", "WITH", "MERGE", "COPY", "TRUNCATE", "VALUES"}
_NEUTRAL_WORDS = {"SET", "RESET"}
_TRANSACTION_WORDS = {"BEGIN", "COMMIT", "ROLLBACK", "START", "END", "SAVEPOINT", "RELEASE"}
_DML_IN_BODY = re.compile(r"\b(INSERT|UPDATE|DELETE|TRUNCATE|COPY|MERGE)\b", re.IGNORECASE)
_DDL_IN_BODY = re.compile(r"\b(CREATE|ALTER|DROP|GRANT|REVOKE)\b", re.IGNORECASE)
_CONFIG_WRITE = re.compile(r"\bfn_config_set\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    """One top-level statement of a file, with the line it starts on (1-based)."""

    text: str
    line: int

    @property
    def first_word(self) -> str:
        code = strip_comments_and_literals(self.text).strip()
        match = re.match(r"[A-Za-z]+", code)
        return match.group(0).upper() if match else ""

    def kind(self) -> Kind:
        """Classify the statement; a DO block is classified by what its body does."""
        word = self.first_word
        if word == "DO":
            body = strip_comments_and_literals(_do_body(self.text))
            if _DML_IN_BODY.search(body) or _CONFIG_WRITE.search(body):
                return Kind.DML
            return Kind.DDL if _DDL_IN_BODY.search(body) else Kind.NEUTRAL
        if word in _DDL_WORDS:
            return Kind.DDL
        if word in _DML_WORDS:
            return Kind.DML
        if word in _NEUTRAL_WORDS:
            return Kind.NEUTRAL
        if word in _TRANSACTION_WORDS:
            return Kind.TRANSACTION
        return Kind.DML  # unknown statements are treated as data changes: never silently DDL


@dataclass(frozen=True, slots=True)
class SqlFile:
    """A phase file with its includes expanded."""

    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> list[Statement]:
        return split_statements(self.text)


def read(path: Path) -> SqlFile:
    """Read *path*, expanding `\\ir FILE` lines relative to the including file, as psql does."""
    return SqlFile(path=path, text=_expand(path, seen=()))


def _expand(path: Path, seen: tuple[Path, ...]) -> str:
    resolved = path.resolve()
    if resolved in seen:
        raise DisciplineError(f"{path}: include cycle through {' → '.join(map(str, seen))}")
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DisciplineError(f"cannot read SQL file {path}: {error.strerror}") from error
    out: list[str] = []
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        match = _INCLUDE.match(line.strip())
        if match:
            target = path.parent / match.group(2).strip("'\"")
            out.append(_expand(target, (*seen, resolved)))
            if not out[-1].endswith("\n"):
                out.append("\n")
        elif line.lstrip().startswith("\\"):
            raise DisciplineError(
                f"{path}:{number}: psql meta-command {line.strip()!r} is not supported; "
                "only \\ir includes are expanded by the runner"
            )
        else:
            out.append(line)
    return "".join(out)


def split_statements(text: str) -> list[Statement]:
    """Split SQL *text* on top-level semicolons (quotes, dollar quotes, comments respected)."""
    statements: list[Statement] = []
    start = 0
    for end in _scan(text, want_semicolons=True):
        chunk = text[start:end]
        if strip_comments_and_literals(chunk).strip():
            line = text.count("\n", 0, start) + 1 + _leading_blank_lines(chunk)
            statements.append(Statement(text=chunk.strip(), line=line))
        start = end + 1
    tail = text[start:]
    if strip_comments_and_literals(tail).strip():
        line = text.count("\n", 0, start) + 1 + _leading_blank_lines(tail)
        statements.append(Statement(text=tail.strip(), line=line))
    return statements


def strip_comments_and_literals(text: str) -> str:
    """Return *text* with comments removed and string/dollar-quoted bodies blanked."""
    out: list[str] = []
    _scan(text, want_semicolons=False, keep=out)
    return "".join(out)


def _leading_blank_lines(chunk: str) -> int:
    """Lines before the first line holding code (comments count as blank)."""
    code = strip_comments_and_literals(chunk)
    stripped = code.lstrip()
    return code[: len(code) - len(stripped)].count("\n")


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def _scan(text: str, *, want_semicolons: bool, keep: list[str] | None = None) -> list[int]:
    """Walk *text* once; return positions of top-level semicolons, or fill *keep* with code.

    Comments vanish from *keep*; quoted bodies are replaced by an empty literal, so keyword
    searches see only code. Newlines are preserved so line numbers stay right.
    """
    semicolons: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            i = j
            continue
        if ch == "/" and text.startswith("/*", i):
            j, depth = i + 2, 1
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if keep is not None:
                keep.append("\n" * text.count("\n", i, j))
            i = j
            continue
        if ch in "'\"":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                if ch == "'" and text[j] == "\\" and i > 0 and text[i - 1] in "eE":
                    j += 2
                    continue
                j += 1
            if keep is not None:
                keep.append(ch * 2 + "\n" * text.count("\n", i, j))
            i = j + 1
            continue
        if ch == "$":
            match = _DOLLAR_TAG.match(text, i)
            if match and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
                tag = match.group(0)
                j = text.find(tag, match.end())
                j = n if j == -1 else j
                if keep is not None:
                    keep.append("''" + "\n" * text.count("\n", i, j))
                i = j + len(tag)
                continue
        if ch == ";" and want_semicolons:
            semicolons.append(i)
        if keep is not None:
            keep.append(ch)
        i += 1
    return semicolons


def _do_body(statement: str) -> str:
    """Return the dollar-quoted body of a DO statement ('' if there is none)."""
    match = _DOLLAR_TAG.search(statement)
    if not match:
        return ""
    end = statement.find(match.group(0), match.end())
    return statement[match.end() : end if end != -1 else len(statement)]


def check_discipline(sql_file: SqlFile, expected: Kind) -> None:
    """Refuse *sql_file* unless every statement is of the *expected* kind (or neutral)."""
    for statement in sql_file.statements():
        kind = statement.kind()
        if kind is Kind.TRANSACTION:
            raise DisciplineError(
                f"{sql_file.path.name}:{statement.line}: transaction control "
                f"({statement.first_word}) is not allowed; the runner owns transactions"
            )
        if kind is Kind.NEUTRAL or kind is expected:
            continue
        if expected is Kind.DDL and _CONFIG_WRITE.search(
            strip_comments_and_literals(statement.text)
        ):
            what = "a dot_config write"
        else:
            what = f"a {kind.value.upper()} statement ({statement.first_word})"
        raise DisciplineError(
            f"{sql_file.path.name}:{statement.line}: {what} in a {expected.value.upper()} file; "
            "DDL and data/config changes must live in separate files (ddl.*.sql vs data.*.sql) "
            "so they run as separate transactions"
        )
