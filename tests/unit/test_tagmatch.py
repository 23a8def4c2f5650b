"""RE2 is the authority on patterns; the faster `re` path must give the same answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.core import _tagmatch

# Patterns people write for tags, plus the corners where engines tend to differ.
SHARED = [
    r"^myapp-V(?P<version>\d+\.\d+\.\d+)$",
    r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$",
    r"rc\d*",
    r"(?i)^RELEASE-(\w+)",
    r"^(a|ab)(c|bcd)(d*)$",
    r"(?:x(a?))+",
    r"((a)|b)+",
    r"\bv\d",
    r"^(?:x|y)+?z?$",
    r"[^.]+\.[^.]+$",
    r"(?P<head>[a-z]+)[-_.](?P<tail>.*)",
    r"\.sig$|^sha256-",
    r"[\w.-]{3,5}",
    r"(?s).",
    r"",
]
TAG_ALPHABET = "abcdxyzABRCEILSV0123456789._-"


@pytest.mark.parametrize("pattern", [pytest.param(p, id=p or "empty") for p in SHARED])
def test_shared_patterns_get_the_fast_path(pattern: str) -> None:
    """Patterns in the shared syntax are run by `re` as well as RE2."""
    assert _tagmatch.compile_pattern(pattern, field="filter.pattern").python_search is not None


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(r"[[:digit:]]+", id="posix-class"),
        pytest.param(r"\pL+", id="unicode-class"),
        pytest.param(r"\Q1.0\E", id="quoted"),
        pytest.param(r"a{,3}", id="open-lower-bound"),
        pytest.param(r"(?U)a+", id="ungreedy-flag"),
        pytest.param(r"\x41", id="hex-escape"),
        pytest.param(r"v\z", id="end-of-text"),
        pytest.param(r"é+", id="non-ascii"),
        pytest.param(r"(a|)+", id="repeated-empty-capture"),
        pytest.param(r"(a*)*b", id="nested-empty-repeat"),
    ],
)
def test_other_syntax_stays_on_re2(pattern: str) -> None:
    """Syntax whose meaning could differ between engines is only ever run by RE2."""
    compiled = _tagmatch.compile_pattern(pattern, field="filter.pattern")
    assert compiled.python_search is None
    assert compiled.searcher(plain=True) is compiled.re2_search


def _spans(match: _tagmatch.Match | None, groups: int) -> list[str | None] | None:
    if match is None:
        return None
    return [match.group(i) for i in range(groups + 1)]


@settings(max_examples=300, deadline=None)
@given(tag=st.text(alphabet=TAG_ALPHABET, max_size=20), index=st.integers(0, len(SHARED) - 1))
def test_engines_agree(tag: str, index: int) -> None:
    """For printable ASCII tags, `re` and RE2 find the same match and the same groups."""
    compiled = _tagmatch.compile_pattern(SHARED[index], field="filter.pattern")
    assert compiled.python_search is not None
    assert _spans(compiled.python_search(tag), compiled.groups) == _spans(
        compiled.re2_search(tag), compiled.groups
    )


@pytest.mark.parametrize(
    ("tags", "plain"),
    [
        pytest.param(["v1", "v2"], True, id="ascii"),
        pytest.param(["v1", "v\n2"], False, id="newline"),
        pytest.param(["v1", "vé"], False, id="non-ascii"),
        pytest.param(["v\t1"], False, id="tab"),
        pytest.param(["v\x7f"], False, id="delete"),
        pytest.param([], True, id="empty"),
    ],
)
def test_plain(tags: list[str], plain: bool) -> None:
    """Only printable ASCII tags without newlines take the `re` path."""
    assert _tagmatch.is_plain(tags, "\n".join(tags)) is plain


@pytest.mark.parametrize(
    ("globs", "expected"),
    [
        pytest.param(["*-debug"], (["-debug"], [], []), id="suffix"),
        pytest.param(["tmp-*"], ([], ["tmp-"], []), id="prefix"),
        pytest.param(["*-rc?", "*", "x"], ([], [], ["*-rc?", "*", "x"]), id="complex"),
    ],
)
def test_simple_affixes(globs: list[str], expected: tuple[list[str], ...]) -> None:
    """Plain prefix and suffix globs are recognised; everything else stays a glob."""
    assert _tagmatch.simple_affixes(globs) == expected
