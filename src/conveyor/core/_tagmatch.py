"""Tag matching for version filters: whole-tag globs, RE2 patterns and extract templates.

RE2 is the authority. Every pattern is compiled with RE2 (the ``google-re2``
binding), so a pattern means what it means in Go's ``regexp`` (Flux) and RE2's
refusals (lookarounds, backreferences, ...) become InvalidVersionPolicy.

Speed: the binding costs about 2-17 microseconds per call from Python, which
alone would blow the 100,000-tag budget. So when a pattern only uses syntax on
which RE2 and Python's ``re`` (with ``re.ASCII``) provably agree, and the tags
being matched are printable ASCII (no newline, so ``$`` cannot differ), the
same pattern is run by ``re``. Anything else (POSIX classes, ``\\p{..}``,
``\\Q..\\E``, ``\\x..``, ``{,n}``, ``(?U)``, non-ASCII patterns or tags) runs on
RE2 itself. tests/unit/test_tagmatch.py cross-checks both engines.
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import re2

from conveyor.core.errors import InvalidVersionPolicy

PATTERN_EXAMPLE = r"'^myapp-V(?P<version>\d+\.\d+\.\d+)$'"
GLOB_EXAMPLE = "'myapp-V*' or 'v[0-9]*'"
# Escapes that mean the same in RE2 and in Python's re with re.ASCII.
_SAFE_ESCAPES = frozenset("dDwWsSbBAtnrfv")


_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\n"


class Match(Protocol):
    """The part of a match object both engines provide."""

    def group(self, index: int, /) -> str | None: ...


Search = Callable[[str], Match | None]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A validated RE2 pattern, with a faster equivalent engine where one exists."""

    text: str
    groups: int
    names: dict[str, int]
    re2_search: Search
    python_search: Search | None

    def searcher(self, *, plain: bool) -> Search:
        """The search function to use (same results either way); ``plain``: see is_plain."""
        if plain and self.python_search is not None:
            return self.python_search
        return self.re2_search


def is_plain(tags: Sequence[str], text: str) -> bool:
    """Whether every tag is printable ASCII (so no newline), where re and RE2 agree.

    ``text`` is the tags joined by newlines, so one C-speed scan answers.
    """
    if not text.isascii() or text.count("\n") != max(len(tags) - 1, 0):
        return False
    # Deleting every printable byte (and the separators) must leave nothing: C-speed.
    return not text.encode("ascii").translate(None, _PLAIN_BYTES)


def simple_affixes(globs: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Split globs into plain suffixes (``*-debug``), plain prefixes (``tmp-*``) and the rest."""
    suffixes: list[str] = []
    prefixes: list[str] = []
    rest: list[str] = []
    for glob in globs:
        body = glob[1:] if glob.startswith("*") else glob[:-1] if glob.endswith("*") else None
        if body and not any(char in body for char in "*?[\n"):
            (suffixes if glob.startswith("*") else prefixes).append(body)
        else:
            rest.append(glob)
    return suffixes, prefixes, rest


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors become InvalidVersionPolicy, not stderr noise
    return options


def _hint(pattern: str) -> str:
    if re.search(r"\(\?<?[=!]", pattern):
        return "lookarounds such as (?=...) and (?<!...) are not supported by RE2 (Go's regexp)"
    if re.search(r"\\[1-9]|\(\?P=", pattern):
        return "backreferences are not supported by RE2 (Go's regexp)"
    return "RE2 syntax is Go's regexp syntax"


def compile_pattern(text: str, *, field: str) -> Pattern:
    """Compile an RE2 pattern; raises InvalidVersionPolicy naming the field and RE2's reason."""
    try:
        compiled = re2.compile(text, options=_re2_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidVersionPolicy(
            f"{field} '{text}' is not a valid RE2 regular expression ({reason}); "
            f"{_hint(text)}; write e.g. {PATTERN_EXAMPLE}"
        ) from None
    names = dict(compiled.groupindex)
    python = _python_equivalent(text, groups=compiled.groups, names=names)
    return Pattern(
        text=text,
        groups=compiled.groups,
        names=names,
        re2_search=compiled.search,
        python_search=python.search if python is not None else None,
    )


def _uses_only_shared_syntax(pattern: str) -> bool:
    if not pattern.isascii() or "[:" in pattern or "[[" in pattern or "{," in pattern:
        return False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            following = pattern[i + 1 : i + 2]
            if not following or (following.isalnum() and following not in _SAFE_ESCAPES):
                return False
            i += 2
            continue
        if char == "(" and pattern.startswith("(?", i):
            if not re.match(r"\(\?(?::|P<|[ims-]+[:)])", pattern[i:]):
                return False
        i += 1
    return True


def _python_equivalent(
    pattern: str, *, groups: int, names: dict[str, int]
) -> re.Pattern[str] | None:
    if not _uses_only_shared_syntax(pattern):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compiled = re.compile(pattern, re.ASCII)
        except (re.error, Warning):
            return None
    if compiled.groups != groups or dict(compiled.groupindex) != names:
        return None
    if _repeats_empty_capture(pattern):
        return None
    return compiled


def _repeats_empty_capture(pattern: str) -> bool:
    """Whether a group that can match empty is captured inside a repeat such as ``(a|)+``.

    That is the one place where Python's ``re`` and RE2 report different groups
    (Python keeps the last, empty, iteration; RE2 the last non-empty one). The
    check reads ``re``'s own parse tree; if that ever fails, RE2 is used.
    """
    try:
        # The stdlib's own parser of the pattern we just compiled (private, hence importlib).
        _constants = importlib.import_module("re._constants")
        _parser = importlib.import_module("re._parser")

        def walk(items: Any, inside_repeat: bool) -> bool:  # noqa: ANN401 - re's parse tree
            for op, av in items:
                if op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT):
                    _low, high, body = av
                    repeats = high > 1
                    if repeats and body.getwidth()[0] == 0 and _captures(body):
                        return True
                    if walk(body.data, inside_repeat or repeats):
                        return True
                elif op is _constants.SUBPATTERN:
                    if walk(av[3].data, inside_repeat):
                        return True
                elif op is _constants.BRANCH:
                    if any(walk(branch.data, inside_repeat) for branch in av[1]):
                        return True
            return False

        def _captures(body: Any) -> bool:  # noqa: ANN401 - re's parse tree
            return "SUBPATTERN" in repr(body.data)

        return walk(_parser.parse(pattern, re.ASCII).data, False)
    except Exception:  # pragma: no cover - any doubt keeps RE2
        return True


# --- globs ------------------------------------------------------------------


def glob_to_regex(glob: str, *, field: str) -> str:
    """Translate a glob (``*``, ``?``, ``[...]``, ``[!...]``) to a whole-tag regex."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end, body = _glob_class(glob, i, field=field)
            out.append(body)
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _glob_class(glob: str, start: int, *, field: str) -> tuple[int, str]:
    j = start + 1
    negate = glob[j : j + 1] in ("!", "^")
    if negate:
        j += 1
    first = j
    if glob[j : j + 1] == "]":
        j += 1  # a leading ']' is a literal, as in fnmatch
    while j < len(glob) and glob[j] != "]":
        j += 1
    if j >= len(glob):
        raise InvalidVersionPolicy(
            f"{field} '{glob}': the '[' at position {start + 1} is never closed; "
            f"write e.g. {GLOB_EXAMPLE}"
        )
    body = glob[first:j]
    items: list[str] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low > high:
                raise InvalidVersionPolicy(
                    f"{field} '{glob}': range '{low}-{high}' is backwards; write '{high}-{low}'"
                )
            items.append(f"{re.escape(low)}-{re.escape(high)}")
            k += 3
        else:
            items.append(re.escape(body[k]))
            k += 1
    return j, ("[^" if negate else "[") + "".join(items) + "]"


def compile_globs(globs: Sequence[str], *, field: str) -> re.Pattern[str] | None:
    """One whole-tag regex for any of the globs (None when there are none)."""
    if not globs:
        return None
    alternatives = "|".join(f"(?:{glob_to_regex(g, field=field)})" for g in globs)
    return re.compile(alternatives, re.DOTALL)


# --- extract templates ---------------------------------------------------------

_REFERENCE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z0-9_]+)|(\$))")


def compile_extract(template: str, pattern: Pattern) -> tuple[str | int, ...]:
    """Split ``$name``/``${name}``/``$1``/``$$`` into literal parts and group indexes.

    Names follow Go's ``Regexp.Expand``: ``$name`` takes the longest run of letters,
    digits and underscores, so ``$1x`` means group ``1x``. Unlike Go, a reference
    to a group the pattern lacks is an error instead of silently empty.
    """
    parts: list[str | int] = []
    position = 0
    for match in _REFERENCE.finditer(template):
        if match.start() > position:
            parts.append(template[position : match.start()])
        position = match.end()
        if match[3]:
            parts.append("$")
            continue
        name = match[1] if match[1] is not None else match[2]
        parts.append(_group_index(name, template, pattern))
    rest = template[position:]
    if "$" in rest:
        raise InvalidVersionPolicy(
            f"filter.extract '{template}': a '$' must start $name, ${{name}}, $1 or $$; "
            "write e.g. '$version' or '${version}'"
        )
    if rest:
        parts.append(rest)
    if not any(isinstance(part, int) for part in parts):
        raise InvalidVersionPolicy(
            f"filter.extract '{template}' names no group of the pattern, so every tag "
            "would get the same key; write e.g. '$version' or '$1'"
        )
    return tuple(parts)


def _group_index(name: str, template: str, pattern: Pattern) -> int:
    if name.isdigit() and int(name) <= pattern.groups:
        return int(name)
    if name in pattern.names:
        return pattern.names[name]
    known = ", ".join(f"${n}" for n in pattern.names) or "none"
    extra = ""
    if name[:1].isdigit() and not name.isdigit():
        digits = re.match(r"\d+", name)
        assert digits is not None  # name starts with a digit
        extra = f" (write ${{{digits[0]}}}{name[len(digits[0]) :]} to follow a group by text)"
    raise InvalidVersionPolicy(
        f"filter.extract '{template}' refers to group '{name}', which the pattern "
        f"'{pattern.text}' does not have{extra}; its groups: "
        f"{pattern.groups} numbered, named: {known}"
    )


def expand(parts: tuple[str | int, ...], match: Match) -> tuple[str, list[int]]:
    """The extracted key, plus the groups that did not take part in the match."""
    pieces: list[str] = []
    missing: list[int] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = match.group(part)
        if value is None:
            missing.append(part)
        else:
            pieces.append(value)
    return "".join(pieces), missing
