"""Semantic versions and the Masterminds/semver v3 constraint grammar, in pure Python.

Flux's ImagePolicy checks tags against ``github.com/Masterminds/semver/v3``
constraints, so Conveyor implements the same grammar and the same decisions
(read from Masterminds' ``constraints.go``; no code copied):

- a range is one or more OR groups separated by ``||``; inside a group the
  comparisons are ANDed and separated by whitespace or one comma;
- operators ``=`` (or none), ``!=``, ``>``, ``<``, ``>=``, ``=>``, ``<=``, ``=<``,
  ``~`` (also ``~>``), ``^``; versions may start with ``v`` and may be partial
  or use ``x``, ``X`` or ``*`` for a part (``1.2.x``, ``1.x``, ``*``);
- ``A - B`` (spaces around the hyphen) means ``>= A, <= B``;
- prereleases: a prerelease version satisfies an OR group only when some
  comparison in that group itself names a prerelease (Masterminds v3's
  group rule; npm's "same major.minor.patch" rule is *not* applied); within such
  a group it is compared normally;
- build metadata (``+...``) never affects ordering or equality.

Candidate versions (tags) are stricter than Masterminds' ``NewVersion``: only
full ``X.Y.Z[-pre][+build]`` with an optional leading ``v`` and no leading
zeros, which is what Flux's ``version.ParseVersion`` accepts.

A parsed version is represented by its *sort key*, a plain tuple, so ordering
is Python's own tuple comparison (fast) and needs no object per tag. Numbers
are kept as ``(length, digits)`` pairs, which order like the numbers they spell
(no leading zeros) without paying for ``int()`` on every tag:
``(len(major), major, len(minor), minor, len(patch), patch, stable, prerelease)``
where ``stable`` is 1 for a release and 0 for a prerelease, and each prerelease
identifier is ``(0, number)`` or ``(1, text)`` (numbers sort before text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.core.errors import InvalidVersionPolicy

# One regex for candidate versions (SemVer 2.0.0 §2, §9, §10, plus a leading v).
_NUM = r"0|[1-9][0-9]{0,19}"  # Masterminds reads parts as uint64: at most 20 digits
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
VERSION_RE = re.compile(
    rf"v?({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)

# Masterminds limits (constraints.go: MaxConstraintLen, MaxConstraintGroups).
MAX_RANGE_LENGTH = 512
MAX_OR_GROUPS = 32

PrereleaseKey = tuple[tuple[int, int | str], ...]
VersionKey = tuple[int, str, int, str, int, str, int, PrereleaseKey]
# Masterminds parses each part as a uint64: at most 20 digits.
MAX_DIGITS = 20
# The fast path: one line per key, a plain *stable* version (``[v]X.Y.Z[+build]``)
# or the empty alternative. Prereleases and non-versions are left to VERSION_RE.
STABLE_LINES_RE = re.compile(
    rf"(?m)^(?:v?({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:\+(?:{_BUILD_ID}(?:\.{_BUILD_ID})*))?$|.*$)"
)

EXAMPLE = "write e.g. '>=1.4.0 <2.0.0', '^1.4', '~1.4.2', '1.2.x' or '1.2 - 1.4.5'"


def prerelease_key(prerelease: str) -> PrereleaseKey:
    """Order prerelease identifiers as SemVer §11 does: numbers first, numerically."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in prerelease.split("."))


def parse_version(text: str) -> VersionKey | None:
    """Return the sort key of a full ``[v]X.Y.Z[-pre][+build]`` version, or None."""
    match = VERSION_RE.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, pre, _build = match.groups()
    return to_key(major, minor, patch, pre)


def to_key(major: str, minor: str, patch: str, pre: str | None) -> VersionKey | None:
    """The sort key of a version from its parts (digits without leading zeros)."""
    if len(major) > MAX_DIGITS or len(minor) > MAX_DIGITS or len(patch) > MAX_DIGITS:
        return None
    if pre:
        return (len(major), major, len(minor), minor, len(patch), patch, 0, prerelease_key(pre))
    return (len(major), major, len(minor), minor, len(patch), patch, 1, ())


def is_prerelease(key: VersionKey) -> bool:
    """Whether a parsed version is a prerelease."""
    return key[6] == 0


def parse_versions(
    keys: Sequence[str | None], *, stable_only: bool = False
) -> list[VersionKey | None]:
    """Parse many candidate versions at once; None where not a version (or the key is None).

    Cheap work first: one regex pass over all keys joined by newlines finds the
    plain stable versions, which most tags are; only the keys it leaves
    (prereleases, and keys that are not versions at all) go through
    ``parse_version``, and not even those when ``stable_only`` says the caller
    has no use for prereleases (they are None then, too).
    tests/unit/test_semver.py checks this against ``parse_version`` on random keys.
    """
    if not keys:
        return []
    text = "\n".join([key or "" for key in keys])
    if text.count("\n") != len(keys) - 1:  # a key holds a newline: lines would not line up
        return [_parse_one(key, stable_only=stable_only) for key in keys]
    lines = STABLE_LINES_RE.findall(text)
    if len(lines) != len(keys):  # pragma: no cover - guards the one-pass trick
        return [_parse_one(key, stable_only=stable_only) for key in keys]
    stable: list[VersionKey | None] = [
        (len(major), major, len(minor), minor, len(patch), patch, 1, ()) if major else None
        for major, minor, patch in lines
    ]
    if stable_only:
        return stable
    return [
        version if version is not None or key is None else parse_version(key)
        for version, key in zip(stable, keys, strict=True)
    ]


def _parse_one(key: str | None, *, stable_only: bool) -> VersionKey | None:
    version = parse_version(key) if key is not None else None
    return None if version is None or (stable_only and version[6] == 0) else version


# --- constraints --------------------------------------------------------------

_SEG = r"[0-9xX*]+"
_IDENTS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
# A constraint version as Masterminds' cvRegex reads it: v, 1-3 parts, -pre, +build.
_CV = rf"v?({_SEG})(\.{_SEG})?(\.{_SEG})?(-{_IDENTS})?(\+{_IDENTS})?"
_CV_PLAIN = rf"v?{_SEG}(?:\.{_SEG})?(?:\.{_SEG})?(?:-{_IDENTS})?(?:\+{_IDENTS})?"
# Longest operator first; this reaches the same choice as Masterminds' ordered tries.
_OPS = r"!=|>=|=>|<=|=<|~>|>|<|=|~|\^"
_ATOM_RE = re.compile(rf"[ \t\n\f\r]*({_OPS})?[ \t\n\f\r]*{_CV}")
_SEPARATOR_RE = re.compile(r"[ \t\n\f\r]*,[ \t\n\f\r]*|[ \t\n\f\r]+")
_HYPHEN_RE = re.compile(
    rf"[ \t\n\f\r]*({_CV_PLAIN})[ \t\n\f\r]+-[ \t\n\f\r]+({_CV_PLAIN})[ \t\n\f\r]*"
)
_X = frozenset({"x", "X", "*"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """One comparison of a range, such as ``>=1.2.x``, with its wildcard facts."""

    operator: str
    text: str
    key: VersionKey
    dirty: bool  # some part was x, *, or missing
    minor_dirty: bool  # the minor (and patch) part was x or missing
    patch_dirty: bool  # only the patch part was x or missing

    def admits(self, v: VersionKey) -> bool:
        """Whether version ``v`` satisfies this comparison (prerelease gate excluded)."""
        return _PREDICATES[self.operator](v, self)


def _major(v: VersionKey) -> tuple[int, str]:
    return (v[0], v[1])


def _minor(v: VersionKey) -> tuple[int, str]:
    return (v[2], v[3])


def _lt(v: VersionKey, c: Comparison) -> bool:
    return v < c.key


def _gte(v: VersionKey, c: Comparison) -> bool:
    return v >= c.key


def _gt(v: VersionKey, c: Comparison) -> bool:
    if not c.dirty:
        return v > c.key
    if v[1] != c.key[1]:
        return _major(v) > _major(c.key)
    if c.minor_dirty:  # >11 wants 12 or more
        return False
    if c.patch_dirty:  # >11.1 wants 11.2 or more
        return _minor(v) > _minor(c.key)
    return v > c.key


def _lte(v: VersionKey, c: Comparison) -> bool:
    if not c.dirty:
        return v <= c.key
    if _major(v) > _major(c.key):
        return False
    return not (v[1] == c.key[1] and _minor(v) > _minor(c.key) and not c.minor_dirty)


def _tilde(v: VersionKey, c: Comparison) -> bool:
    if v < c.key:
        return False
    if c.key[:6] == _ZERO and not c.minor_dirty and not c.patch_dirty:
        return True  # ~* and ~0.0.0 accept everything at or above
    if v[1] != c.key[1]:
        return False
    return v[3] == c.key[3] or c.minor_dirty


def _equal(v: VersionKey, c: Comparison) -> bool:
    if c.dirty:
        return _tilde(v, c)
    return v == c.key


def _not_equal(v: VersionKey, c: Comparison) -> bool:
    if c.dirty:
        if v[1] != c.key[1]:
            return True
        if c.minor_dirty:
            return False
        if v[3] != c.key[3]:
            return True
        if c.patch_dirty:
            # Masterminds compares prereleases here: a different prerelease is a different version.
            return v[6:] != c.key[6:] if (v[6] == 0 or c.key[6] == 0) else False
    return v != c.key


def _caret(v: VersionKey, c: Comparison) -> bool:
    if v < c.key:
        return False
    if c.key[1] != "0" or c.minor_dirty:  # ^1.2.3 := >=1.2.3 <2.0.0
        return v[1] == c.key[1]
    if v[1] != "0":
        return False
    if c.key[3] != "0" or c.patch_dirty:  # ^0.2.3 := >=0.2.3 <0.3.0
        return v[3] == c.key[3]
    if v[3] != "0":
        return False
    return v[5] == c.key[5]  # ^0.0.3 := =0.0.3


_ZERO = (1, "0", 1, "0", 1, "0")
_PREDICATES: dict[str, Callable[[VersionKey, Comparison], bool]] = {
    "": _equal,
    "=": _equal,
    "!=": _not_equal,
    ">": _gt,
    "<": _lt,
    ">=": _gte,
    "=>": _gte,
    "<=": _lte,
    "=<": _lte,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """Comparisons that must all hold; admits prereleases only if one of them names one."""

    comparisons: tuple[Comparison, ...]
    admits_prereleases: bool

    def admits(self, v: VersionKey) -> bool:
        """Whether version ``v`` satisfies every comparison of the group."""
        if v[6] == 0 and not self.admits_prereleases:
            return False
        return all(c.admits(v) for c in self.comparisons)

    def compile(self) -> Callable[[VersionKey], bool]:
        """The same test as ``admits`` as one closure, for the 100,000-tag loop."""
        checks = tuple((_PREDICATES[c.operator], c) for c in self.comparisons)
        stable_only = not self.admits_prereleases
        if len(checks) == 1:
            ((first, c1),) = checks

            def one(v: VersionKey) -> bool:
                return not (stable_only and v[6] == 0) and first(v, c1)

            return one
        if len(checks) == 2:
            (first, c1), (second, c2) = checks

            def two(v: VersionKey) -> bool:
                return not (stable_only and v[6] == 0) and first(v, c1) and second(v, c2)

            return two

        def every(v: VersionKey) -> bool:
            if stable_only and v[6] == 0:
                return False
            for predicate, c in checks:
                if not predicate(v, c):
                    return False
            return True

        return every


@dataclass(frozen=True, slots=True, kw_only=True)
class Range:
    """A parsed Masterminds constraint: OR groups of ANDed comparisons."""

    text: str
    groups: tuple[Group, ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse a range; raises InvalidVersionPolicy naming the bad part and a valid form."""
        return parse_range(text)

    def admits(self, v: VersionKey) -> bool:
        """Whether version ``v`` satisfies the range."""
        return any(group.admits(v) for group in self.groups)

    def compile(self) -> Callable[[VersionKey], bool]:
        """The same test as ``admits`` as one closure, for the 100,000-tag loop."""
        if len(self.groups) == 1:
            return self.groups[0].compile()
        groups = tuple(group.compile() for group in self.groups)

        def any_group(v: VersionKey) -> bool:
            for admits in groups:
                if admits(v):
                    return True
            return False

        return any_group

    def interval(self) -> tuple[VersionKey, VersionKey, bool] | None:
        """``(low, high, stable_only)`` when the range is exactly ``>=low <high``, else None.

        ``>=`` and ``<`` compare whole versions even with wildcards (Masterminds'
        greaterThanEqual and lessThan ignore them), so such a range is the
        half-open interval [low, high); the caller can then test it inline.
        """
        if len(self.groups) != 1 or len(self.groups[0].comparisons) != 2:
            return None
        by_operator = {c.operator: c for c in self.groups[0].comparisons}
        low = by_operator.get(">=") or by_operator.get("=>")
        high = by_operator.get("<")
        if low is None or high is None:
            return None
        return low.key, high.key, not self.groups[0].admits_prereleases

    @property
    def admits_prereleases(self) -> bool:
        """Whether any prerelease can satisfy the range at all."""
        return any(group.admits_prereleases for group in self.groups)

    def __str__(self) -> str:
        return self.text


def _invalid(text: str, detail: str) -> InvalidVersionPolicy:
    return InvalidVersionPolicy(f"'{text}' is not a valid semver range ({detail}); {EXAMPLE}")


def _number(part: str, text: str) -> str:
    if not part.isdigit():
        raise _invalid(text, f"'{part}' is not a number, x, X or *")
    return str(int(part))  # Masterminds reads '01' as 1


def _comparison(match: re.Match[str], text: str) -> Comparison:
    operator = match[1] or ""
    major, minor, patch = match[2], match[3], match[4]
    pre = (match[5] or "")[1:]
    minor = minor[1:] if minor else None
    patch = patch[1:] if patch else None
    dirty = minor_dirty = patch_dirty = False
    if major in _X:
        numbers, dirty = ("0", "0", "0"), True
    elif minor is None or minor in _X:
        numbers, dirty, minor_dirty = (_number(major, text), "0", "0"), True, True
    elif patch is None or patch in _X:
        numbers = (_number(major, text), _number(minor, text), "0")
        dirty = patch_dirty = True
    else:
        numbers = (_number(major, text), _number(minor, text), _number(patch, text))
    key = to_key(*numbers, pre or None)
    if key is None:
        raise _invalid(text, f"a number longer than {MAX_DIGITS} digits")
    version_text = match.group(0).strip()[len(operator) :].strip()
    return Comparison(
        operator=operator,
        text=version_text,
        key=key,
        dirty=dirty,
        minor_dirty=minor_dirty,
        patch_dirty=patch_dirty,
    )


def _parse_group(group: str, text: str) -> Group:
    comparisons: list[Comparison] = []
    position, end = 0, len(group.rstrip(" \t\n\f\r"))
    if end == 0:
        raise _invalid(text, "an empty group; '||' needs a comparison on both sides")
    while True:
        match = _ATOM_RE.match(group, position)
        if match is None:
            rest = group[position:].strip()
            if re.fullmatch(_OPS, rest):
                raise _invalid(text, f"'{rest}' has no version after it")
            raise _invalid(text, f"cannot read a comparison at '{rest}'")
        comparisons.append(_comparison(match, text))
        position = match.end()
        if position >= end:
            break
        separator = _SEPARATOR_RE.match(group, position)
        if separator is None:
            rest = group[position:].strip()
            raise _invalid(text, f"'{rest}' must be separated by a space or a comma")
        position = separator.end()
        if position >= end:
            raise _invalid(text, "it ends with a separator and no comparison after it")
    return Group(
        comparisons=tuple(comparisons),
        admits_prereleases=any(c.key[6] == 0 for c in comparisons),
    )


def parse_range(text: str) -> Range:
    """Parse a Masterminds/semver v3 constraint string into a Range."""
    if not text.strip():
        raise _invalid(text, "it is empty; leave the range out to accept any stable version")
    if len(text) > MAX_RANGE_LENGTH:
        raise _invalid(text[:40] + "...", f"longer than {MAX_RANGE_LENGTH} characters")
    rewritten = _HYPHEN_RE.sub(lambda m: f">= {m[1]}, <= {m[2]} ", text)
    parts = rewritten.split("||")
    if len(parts) > MAX_OR_GROUPS:
        raise _invalid(text, f"more than {MAX_OR_GROUPS} '||' groups")
    return Range(text=text, groups=tuple(_parse_group(part, text) for part in parts))


def format_key(key: VersionKey) -> str:
    """Render a version key as ``X.Y.Z[-pre]`` for explanations."""
    base = f"{key[1]}.{key[3]}.{key[5]}"
    if key[6]:
        return base
    return base + "-" + ".".join(str(part[1]) for part in key[7])
