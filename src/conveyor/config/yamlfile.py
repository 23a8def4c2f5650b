"""Reading YAML with line marks kept, and finding a field's line again.

ruamel.yaml's round-trip loader keeps, for every mapping and sequence, where
each key and value started (0-based; we report 1-based like editors do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from conveyor.core.errors import Location, Problem

PathPart = str | int


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One parsed file: its name as shown in errors and its round-trip tree."""

    file: str
    tree: Any


def load_text(text: str, *, file: str) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse YAML text; returns the document or the located syntax problems."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = _duplicate_key_name(exc)
        return None, [
            Problem(
                location=Location(file=file, line=mark.line + 1, column=mark.column + 1),
                message=f"duplicate key '{key}' in the same mapping; each name may appear once",
            )
        ]
    except MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, file=file, text=text)]
    return YamlDocument(file=file, tree=tree), []


def load_file(
    path: Path, *, shown_as: str | None = None
) -> tuple[YamlDocument | None, list[Problem]]:
    """Read and parse one YAML file; unreadable files are problems too."""
    name = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem(location=Location(file=name), message="not UTF-8 text")]
    except OSError as exc:
        return None, [Problem(location=Location(file=name), message=f"cannot read: {exc.strerror}")]
    return load_text(text, file=name)


def _duplicate_key_name(exc: DuplicateKeyError) -> str:
    problem = exc.problem or ""
    start = problem.find('"')
    end = problem.find('"', start + 1)
    return problem[start + 1 : end] if 0 <= start < end else "?"


def _syntax_problem(exc: MarkedYAMLError, *, file: str, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    reason = (exc.problem or exc.context or "invalid YAML").strip()
    if "\\t" in reason or "'\\t'" in reason or _tab_at(text, mark):
        reason = "a tab character is not allowed here; YAML indentation must use spaces"
    return Problem(
        location=Location(file=file, line=line, column=column),
        message=f"YAML syntax error: {reason}",
    )


def _tab_at(text: str, mark: Any) -> bool:  # noqa: ANN401 - ruamel's Mark is untyped
    if mark is None:
        return False
    lines = text.splitlines()
    if mark.line >= len(lines):
        return False
    return "\t" in lines[mark.line][: mark.column + 1]


def locate(tree: Any, path: Sequence[PathPart], *, at_key: bool = False) -> tuple[int, int] | None:  # noqa: ANN401
    """The 1-based (line, column) of the node at ``path``, or of its nearest existing parent.

    With ``at_key`` the position of the mapping key is given instead of its
    value (used for unknown keys, where the key itself is the mistake).
    """
    node = tree
    best: tuple[int, int] | None = (1, 1)
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line, column = (
                node.lc.key(part)
                if at_key or not _has_value_mark(node, part)
                else node.lc.value(part)
            )
            best = (line + 1, column + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            best = (line + 1, column + 1)
            node = node[part]
        else:
            break
    return best


def _has_value_mark(node: CommentedMap, key: Any) -> bool:  # noqa: ANN401
    try:
        node.lc.value(key)
    except (KeyError, TypeError):
        return False
    value = node[key]
    # A nested mapping or list "starts" on the next line; point at the key instead.
    return not isinstance(value, CommentedMap | CommentedSeq)


def to_plain(tree: Any) -> Any:  # noqa: ANN401 - YAML data is untyped by nature
    """ruamel's round-trip containers as plain dicts, lists and scalars."""
    if isinstance(tree, dict):
        return {str(k) if not isinstance(k, str) else k: to_plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_plain(v) for v in tree]
    if isinstance(tree, str):
        return str(tree)
    return tree
