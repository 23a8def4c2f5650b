"""The Masterminds/semver v3 constraint grammar, checked against Masterminds' own table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.core import semver
from conveyor.core.errors import InvalidVersionPolicy


def version(text: str) -> semver.VersionKey:
    """Parse a test version; Masterminds' tables also use short forms such as '1.4'."""
    parts = text.split("-", 1)
    numbers = parts[0].split(".")
    numbers += ["0"] * (3 - len(numbers))
    full = ".".join(numbers) + (f"-{parts[1]}" if len(parts) > 1 else "")
    key = semver.parse_version(full)
    assert key is not None, text
    return key


# Transcribed from TestConstraintsCheck in Masterminds/semver v3 constraints_test.go
# (test data only): (range, version, satisfied).
MASTERMINDS_CHECKS = [
    ("*", "1.2.3", True),
    ("~0.0.0", "1.2.3", True),
    ("0.x.x", "1.2.3", False),
    ("0.0.x", "1.2.3", False),
    ("0.0.0", "1.2.3", False),
    ("^0.0.0", "1.2.3", False),
    ("= 2.0", "1.2.3", False),
    ("= 2.0", "2.0.0", True),
    ("4.1", "4.1.0", True),
    ("4.1.x", "4.1.3", True),
    ("1.x", "1.4", True),
    ("!=4.1", "4.1.0", False),
    ("!=4.1-alpha", "4.1.0-alpha", False),
    ("!=4.1-alpha", "4.1.1-alpha", False),
    ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1", "5.1.0", True),
    ("!=4.x", "5.1.0", True),
    ("!=4.x", "4.1.0", False),
    ("!=4.1.x", "4.2.0", True),
    ("!=4.2.x", "4.2.3", False),
    (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False),
    ("<1.1", "0.1.0", True),
    ("<1.1", "1.1.0", False),
    ("<1.1", "1.1.1", False),
    ("<1.x", "1.1.1", False),
    ("<1.x", "0.1.1", True),
    ("<1.x", "2.0.0", False),
    ("<1.1.x", "1.2.1", False),
    ("<1.1.x", "1.1.500", False),
    ("<1.1.x", "1.0.500", True),
    ("<1.2.x", "1.1.1", True),
    (">=1.1", "4.1.0", True),
    (">=1.1", "4.1.0-beta", False),
    (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False),
    ("<=1.1", "0.1.0", True),
    ("<=1.1", "0.1.0-alpha", False),
    ("<=1.1-a", "0.1.0-alpha", True),
    ("<=1.1", "1.1.0", True),
    ("<=1.x", "1.1.0", True),
    ("<=2.x", "3.0.0", False),
    ("<=1.1", "1.1.1", True),
    ("<=1.1.x", "1.2.500", False),
    ("<=4.5", "3.4.0", True),
    ("<=4.5", "3.7.0", True),
    ("<=4.5", "4.6.3", False),
    (">1.1, <2", "1.1.1", False),
    (">1.1, <2", "1.2.1", True),
    (">1.1, <3", "4.3.2", False),
    (">=1.1, <2, !=1.2.3", "1.2.3", False),
    (">1.1 <2", "1.1.1", False),
    (">1.1 <2", "1.2.1", True),
    (">1.1    <3", "4.3.2", False),
    (">=1.1    <2    !=1.2.3", "1.2.3", False),
    (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", False),
    (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", True),
    ("> 1.1, <     2", "1.1.1", False),
    (">   1.1, <2", "1.2.1", True),
    (">= 1.1, <     2, !=1.2.3", "1.2.3", False),
    ("> 1.1 < 2", "1.1.1", False),
    (">1.1 < 2", "1.2.1", True),
    (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", True),
    (">= 1.0.0  <= 2.0.0-beta", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta", "1.0.1", True),
    (">= 1.0.0  <= 2.0.0-beta", "3.0.0", False),
    (">= 1.0.0  <= 2.0.0-beta || > 3", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta || > 3", "3.0.1-beta", False),
    (">= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3", "1.0.1-beta", False),
    (">= 1.0.0-0  <= 2.0.0", "1.0.1-beta", True),
    ("1.1 - 2", "1.1.1", True),
    ("1.5.0 - 4.5", "3.7.0", True),
    ("1.1-3", "4.3.2", False),
    ("^1.1", "1.1.1", True),
    ("^1.1", "4.3.2", False),
    ("^1.x", "1.1.1", True),
    ("^2.x", "1.1.1", False),
    ("^1.x", "2.1.1", False),
    ("^1.x", "1.1.1-beta1", False),
    ("^1.1.2-alpha", "1.2.1-beta1", True),
    ("^1.2.x-alpha", "1.1.1-beta1", False),
    ("^0.0.1", "0.0.1", True),
    ("^0.0.1", "0.3.1", False),
    ("~*", "2.1.1", True),
    ("~1", "2.1.1", False),
    ("~1", "1.3.5", True),
    ("~1", "1.4", True),
    ("~1.x", "2.1.1", False),
    ("~1.x", "1.3.5", True),
    ("~1.1", "1.1.1", True),
    ("~1.1", "1.1.1-alpha", False),
    ("~1.1-alpha", "1.1.1-beta", True),
    ("~1.1.1-beta", "1.1.1-alpha", False),
    ("~1.1.1-beta", "1.1.1", True),
    ("~1.2.3", "1.2.5", True),
    ("~1.2.3", "1.2.2", False),
    ("~1.2.3", "1.3.2", False),
    ("~1.1", "1.2.3", False),
    ("~1.3", "2.4.5", False),
    ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", True),
    ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", True),
]


class TestMastermindsTable:
    @pytest.mark.parametrize(
        ("text", "candidate", "expected"),
        [pytest.param(r, v, e, id=f"{r}|{v}") for r, v, e in MASTERMINDS_CHECKS],
    )
    def test_check(self, text: str, candidate: str, expected: bool) -> None:
        """A range admits a version exactly when Masterminds' Check says so."""
        parsed = semver.parse_range(text)
        assert parsed.admits(version(candidate)) is expected
        assert parsed.compile()(version(candidate)) is expected


class TestOperators:
    @pytest.mark.parametrize(
        ("text", "candidate", "expected"),
        [
            pytest.param("=>1.2.0", "1.2.0", True, id="arrow-gte"),
            pytest.param("=<1.2.0", "1.2.1", False, id="arrow-lte"),
            pytest.param("~>1.2", "1.2.9", True, id="pessimistic-in"),
            pytest.param("~>1.2", "1.3.0", False, id="pessimistic-out"),
            pytest.param("^0.2.3", "0.2.9", True, id="caret-zero-major-in"),
            pytest.param("^0.2.3", "0.3.0", False, id="caret-zero-major-out"),
            pytest.param("^0.0.3", "0.0.4", False, id="caret-zero-minor"),
            pytest.param("1.2.X", "1.2.7", True, id="capital-x"),
            pytest.param("X", "7.0.0", True, id="bare-x"),
            pytest.param("v1.2.3", "1.2.3", True, id="leading-v-in-range"),
            pytest.param(">=1.2.3", "1.2.3+build.5", True, id="build-metadata-ignored"),
            pytest.param("=1.2.3+other", "1.2.3+build.5", True, id="build-equal"),
            pytest.param("*", "1.0.0-rc.1", False, id="star-excludes-prerelease"),
            pytest.param(">=0.0.0-0", "1.0.0-rc.1", True, id="dash-zero-admits-prerelease"),
            pytest.param(">1.x", "2.0.0", True, id="gt-dirty-next-major"),
            pytest.param(">1.x", "1.9.0", False, id="gt-dirty-same-major"),
            pytest.param(">=1.0.0-rc.1 <2", "1.5.0-alpha", True, id="group-prerelease-rule"),
            pytest.param(">=1.0.0 <2 || >=3.0.0-0", "1.5.0-alpha", False, id="other-group-pre"),
        ],
    )
    def test_operator(self, text: str, candidate: str, expected: bool) -> None:
        """Each operator and wildcard behaves as Masterminds v3 decides."""
        assert semver.parse_range(text).admits(version(candidate)) is expected


class TestVersions:
    @pytest.mark.parametrize(
        ("text", "parsed"),
        [
            pytest.param("1.2.3", True, id="plain"),
            pytest.param("v1.2.3", True, id="leading-v"),
            pytest.param("1.2.3-rc.1+build.7", True, id="pre-and-build"),
            pytest.param("1.0.0-rc.0a", True, id="alphanumeric-identifier-starting-with-digit"),
            pytest.param("1.2", False, id="partial"),
            pytest.param("1.2.3.4", False, id="four-parts"),
            pytest.param("01.2.3", False, id="leading-zero"),
            pytest.param("1.2.3-01", False, id="numeric-prerelease-leading-zero"),
            pytest.param("V1.2.3", False, id="capital-v"),
            pytest.param("1.2.3-", False, id="empty-prerelease"),
            pytest.param("1" * 21 + ".0.0", False, id="beyond-uint64-digits"),
        ],
    )
    def test_parse(self, text: str, parsed: bool) -> None:
        """Only full X.Y.Z[-pre][+build] with an optional leading v is a candidate."""
        assert (semver.parse_version(text) is not None) is parsed
        assert (semver.parse_versions([text])[0] is not None) is parsed

    def test_precedence(self) -> None:
        """Versions order as SemVer 2.0.0 §11's example, and build metadata ties."""
        ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "10.0.0",
        ]
        keys = [semver.parse_version(text) for text in reversed(ordered)]
        assert sorted(keys) == [semver.parse_version(text) for text in ordered]  # type: ignore[type-var]
        assert semver.parse_version("1.0.0+a") == semver.parse_version("v1.0.0+b")

    def test_parse_many_matches_parse_one(self) -> None:
        """The one-pass parser agrees with the single parser, line for line."""
        keys = ["1.2.3", None, "v2.0.0-rc.1", "nope", "", "3.0.0+x", "1.2", "1.0.0-rc.0a"]
        assert semver.parse_versions(keys) == [
            semver.parse_version(k) if k is not None else None for k in keys
        ]


class TestInvalidRanges:
    @pytest.mark.parametrize(
        ("text", "detail"),
        [
            pytest.param(">=1.4,<", "'<' has no version after it", id="dangling-operator"),
            pytest.param("", "it is empty", id="empty"),
            pytest.param(">=1.0.0<2.0.0", "must be separated", id="no-separator"),
            pytest.param("latest", "cannot read a comparison at 'latest'", id="word"),
            pytest.param(">=1 ||", "an empty group", id="empty-or-group"),
            pytest.param("1x.2", "'1x' is not a number", id="bad-part"),
            pytest.param(">=1.0.0,", "ends with a separator", id="trailing-comma"),
            pytest.param("1 || " * 40 + "1", "more than 32", id="too-many-groups"),
        ],
    )
    def test_invalid(self, text: str, detail: str) -> None:
        """An unusable range names the problem and shows valid examples."""
        with pytest.raises(InvalidVersionPolicy) as caught:
            semver.parse_range(text)
        assert detail in str(caught.value)
        assert "write e.g. '>=1.4.0 <2.0.0'" in str(caught.value)

    def test_exact_message(self) -> None:
        """The message for a dangling operator is exactly the documented one."""
        with pytest.raises(InvalidVersionPolicy) as caught:
            semver.parse_range(">=1.4,<")
        assert str(caught.value) == (
            "'>=1.4,<' is not a valid semver range ('<' has no version after it); "
            "write e.g. '>=1.4.0 <2.0.0', '^1.4', '~1.4.2', '1.2.x' or '1.2 - 1.4.5'"
        )


class TestInterval:
    @pytest.mark.parametrize(
        ("text", "is_interval"),
        [
            pytest.param(">=1.0.0 <2.0.0", True, id="plain"),
            pytest.param("=>1.x, <2", True, id="wildcards-and-alias"),
            pytest.param(">=1.0.0-0 <2.0.0", True, id="with-prerelease"),
            pytest.param(">1.0.0 <2.0.0", False, id="exclusive-low"),
            pytest.param(">=1.0.0 <=2.0.0", False, id="inclusive-high"),
            pytest.param(">=1 <2 || >=3 <4", False, id="two-groups"),
            pytest.param("^1", False, id="caret"),
        ],
    )
    def test_interval_agrees_with_admits(self, text: str, is_interval: bool) -> None:
        """The inline interval test gives the same answer as the general check."""
        parsed = semver.parse_range(text)
        interval = parsed.interval()
        assert (interval is not None) is is_interval
        if interval is None:
            return
        low, high, stable_only = interval
        for candidate in [
            "0.9.9",
            "1.0.0-rc.1",
            "1.0.0",
            "1.5.0-alpha",
            "1.9.9",
            "2.0.0-0",
            "2.0.0",
        ]:
            v = version(candidate)
            inline = (not stable_only or v[6] == 1) and low <= v < high
            assert inline is parsed.admits(v), candidate


# Keys for the differential tests: valid versions, valid versions broken in one
# small way (the corners a fast parser could get wrong), and arbitrary short text.
NUMBERS = st.one_of(
    st.integers(0, 9), st.integers(10, 99), st.just(10**19), st.integers(0, 10**25)
).map(str)
IDENTIFIERS = st.sampled_from(["rc", "rc.1", "0", "1", "alpha.beta-2", "x-", "0a", "11"])
BUILDS = st.sampled_from(["b", "b.2", "001", "x-y", "20240101"])
BREAKS = [
    lambda text: "V" + text.lstrip("v"),
    lambda text: "vv" + text.lstrip("v"),
    lambda text: " " + text,
    lambda text: text + " ",
    lambda text: text + "\n",
    lambda text: text + "\r",
    lambda text: text + "x",
    lambda text: text + ".4",
    lambda text: text + "-",
    lambda text: text + "+",
    lambda text: text + "+a+b",
    lambda text: text + "+é",
    lambda text: text + "-01",
    lambda text: text + "-a..b",
    lambda text: text.replace(".", "..", 1),
    lambda text: text.replace(".", "-", 1),
    lambda text: text.rsplit(".", 1)[0],
    lambda text: "0" + text.lstrip("v"),
    lambda text: text.lstrip("v").replace(".", "9" * 20 + ".", 1),
    lambda text: text.replace("1", "\u0661", 1),
    lambda text: text.replace("2", "²", 1),
]


@st.composite
def valid_version(draw: st.DrawFn) -> str:
    """A full [v]X.Y.Z[-pre][+build] version (a number may run past the 20 digits allowed)."""
    text = draw(st.sampled_from(["", "v"])) + ".".join(draw(NUMBERS) for _ in "xyz")
    if draw(st.booleans()):
        text += "-" + draw(IDENTIFIERS)
    if draw(st.booleans()):
        text += "+" + draw(BUILDS)
    return text


KEYS = st.lists(
    st.one_of(
        st.none(),
        valid_version(),
        st.tuples(valid_version(), st.sampled_from(BREAKS)).map(lambda pair: pair[1](pair[0])),
        st.text(alphabet="v0123456789.-+a\n", max_size=9),
    ),
    max_size=25,
)


class TestParseManyAgreesWithParseOne:
    """The one-pass fast path of parse_versions is the general parser, only faster."""

    @settings(max_examples=400, deadline=None)
    @given(keys=KEYS)
    def test_all_versions(self, keys: list[str | None]) -> None:
        """Every key parses exactly as parse_version parses it on its own."""
        assert semver.parse_versions(keys) == [
            semver.parse_version(key) if key is not None else None for key in keys
        ]

    @settings(max_examples=400, deadline=None)
    @given(keys=KEYS)
    def test_stable_only(self, keys: list[str | None]) -> None:
        """With stable_only, prereleases are None and every stable version is as parsed alone."""
        expected = []
        for key in keys:
            version = semver.parse_version(key) if key is not None else None
            expected.append(version if version is not None and version[6] == 1 else None)
        assert semver.parse_versions(keys, stable_only=True) == expected
