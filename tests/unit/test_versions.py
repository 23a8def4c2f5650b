"""Version filters and selection policies: which tag wins, and the explanation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.core import _tagmatch, semver, versions
from conveyor.core.errors import InvalidVersionPolicy, TagRefused
from conveyor.core.images import Digest
from conveyor.core.versions import (
    AlphabeticalPolicy,
    DigestPolicy,
    NewestPolicy,
    NumericalPolicy,
    Order,
    SemverPolicy,
    TagFilter,
    TagInfo,
)
from tests.unit.test_semver import BREAKS, valid_version

NO_FILTER = TagFilter()


def pick(
    tags: list[str], *, policy: versions.VersionPolicy, filter: TagFilter = NO_FILTER
) -> str | None:
    """The winning tag's name, or None."""
    winner = versions.select([TagInfo(t) for t in tags], filter=filter, policy=policy).winner
    return winner.tag if winner is not None else None


class TestSemverPolicy:
    @pytest.mark.parametrize(
        ("tags", "range_", "expected"),
        [
            pytest.param(["1.0.0", "1.2.0", "1.10.0"], None, "1.10.0", id="numeric-not-lexical"),
            pytest.param(["1.0.0", "2.0.0-rc.1"], None, "1.0.0", id="no-range-stable-only"),
            pytest.param(["1.0.0", "1.5.0", "2.0.0"], ">=1.0.0 <2.0.0", "1.5.0", id="in-range"),
            pytest.param(["1.5.0", "1.6.0-rc.1"], ">=1.0.0 <2.0.0", "1.5.0", id="prerelease-out"),
            pytest.param(
                ["1.5.0", "1.6.0-rc.1"], ">=1.0.0-0 <2.0.0", "1.6.0-rc.1", id="prerelease-in"
            ),
            pytest.param(["v1.2.3", "1.2.2"], None, "v1.2.3", id="leading-v"),
            pytest.param(["1.2.3+b2", "1.2.3+b10"], None, "1.2.3+b2", id="build-tie-greatest-tag"),
            pytest.param(["1.2.3", "v1.2.3"], None, "v1.2.3", id="equal-keys-greatest-tag"),
            pytest.param(["1.2", "latest", "1.2.3.4"], None, None, id="no-full-versions"),
            pytest.param([], "^1", None, id="empty-list"),
            pytest.param(["3.0.0", "1.9.9"], "^1 || ^2", "1.9.9", id="or-groups"),
        ],
    )
    def test_pick(self, tags: list[str], range_: str | None, expected: str | None) -> None:
        """The semver policy picks the highest version its range admits."""
        assert pick(tags, policy=SemverPolicy(range=range_)) == expected

    def test_extracted_keys(self) -> None:
        """With extract, versions come from the named group and the original tag wins."""
        flt = TagFilter(pattern=r"^myapp-V(?P<version>\d+\.\d+\.\d+)$", extract="$version")
        tags = ["myapp-V1.4.2", "myapp-V1.10.0", "other-V9.9.9", "myapp-V1.4.2.sig"]
        assert pick(tags, policy=SemverPolicy(range="^1"), filter=flt) == "myapp-V1.10.0"

    def test_explanation(self) -> None:
        """Every tag gets a verdict: dropped, skipped with a reason, or ranked."""
        flt = TagFilter(pattern=r"^app-(?P<v>.+)$", extract="${v}", exclude=("*-debug",))
        tags = [
            "app-1.0.0",
            "app-1.1.0",
            "app-2.0.0",
            "app-1.2.0-rc.1",
            "app-1.3",
            "x",
            "app-1.0.1-debug",
        ]
        selection = versions.select(
            [TagInfo(t) for t in tags], filter=flt, policy=SemverPolicy(range="<2")
        )
        rows = {row.tag: row for row in selection.rows()}
        assert selection.winner == TagInfo("app-1.1.0")
        assert rows["app-1.1.0"].rank == 1
        assert rows["app-1.1.0"].reason.startswith("winner: highest version in range '<2'")
        assert rows["app-1.0.0"] == versions.TagVerdict(
            tag="app-1.0.0", kept=True, key="1.0.0", rank=2, reason="candidate"
        )
        assert rows["app-2.0.0"].reason == "skipped: 2.0.0 is outside range '<2'"
        assert "names no prerelease" in rows["app-1.2.0-rc.1"].reason
        assert rows["app-1.3"].reason.startswith("skipped: not a full X.Y.Z")
        assert rows["x"] == versions.TagVerdict(
            tag="x",
            kept=False,
            key=None,
            rank=None,
            reason="does not match pattern '^app-(?P<v>.+)$'",
        )
        assert rows["app-1.0.1-debug"].reason == "excluded by exclude glob '*-debug'"

    def test_ten_thousand_tags(self) -> None:
        """Ten thousand tags select the same winner as a plain max over parsed versions."""
        tags = [f"v{i % 10}.{i % 97}.{i}" for i in range(10_000)] + ["v9.96.99999-rc.1"]
        selection = versions.select(
            [TagInfo(t) for t in tags], filter=NO_FILTER, policy=SemverPolicy(range="<9.0.0")
        )
        expected = max(
            (t for t in tags if int(t[1]) < 9 and "-" not in t),
            key=lambda t: tuple(int(p) for p in t[1:].split(".")),
        )
        assert selection.winner == TagInfo(expected)
        assert selection.candidates == 9_000
        assert len(selection.rows()) == 10_001


class TestAlphabeticalAndNumerical:
    @pytest.mark.parametrize(
        ("tags", "policy", "expected"),
        [
            pytest.param(["a", "b", "B"], AlphabeticalPolicy(), "b", id="alpha-asc-byte-order"),
            pytest.param(
                ["a", "b", "B"], AlphabeticalPolicy(order=Order.DESC), "B", id="alpha-desc"
            ),
            pytest.param(
                ["2024-01-02", "2024-01-10"], AlphabeticalPolicy(), "2024-01-10", id="dates"
            ),
            pytest.param(["9", "10", "2"], NumericalPolicy(), "10", id="num-asc"),
            pytest.param(["9", "10", "2"], NumericalPolicy(order=Order.DESC), "2", id="num-desc"),
            pytest.param(["1.5", "1.25", "-3"], NumericalPolicy(), "1.5", id="num-decimal"),
            pytest.param(["10", "010"], NumericalPolicy(), "10", id="num-equal-greatest-tag"),
        ],
    )
    def test_pick(self, tags: list[str], policy: versions.VersionPolicy, expected: str) -> None:
        """Alphabetical orders bytes and numerical orders numbers; the last one wins."""
        assert pick(tags, policy=policy) == expected

    def test_numerical_on_words_fails_the_rule(self) -> None:
        """Keys that are not numbers make the numerical rule select nothing and say why."""
        selection = versions.select(
            [TagInfo(t) for t in ["12", "latest", "13", "main"]],
            filter=NO_FILTER,
            policy=NumericalPolicy(),
        )
        assert selection.winner is None
        assert selection.reason.startswith(
            "the numerical policy needs numbers, but 2 kept keys are not: 'latest', 'main'; "
            "add a filter that keeps only numbers, e.g. pattern: '^[0-9]+$'"
        )
        reasons = {row.tag: row.reason for row in selection.rows()}
        assert reasons["latest"] == "not a number: the numerical policy cannot order it"
        assert reasons["12"] == "not ranked: other keys are not numbers"

    def test_numerical_after_filter(self) -> None:
        """A filter that keeps only numbers lets the numerical rule work."""
        flt = TagFilter(pattern=r"^build-(?P<n>[0-9]+)$", extract="$n")
        assert (
            pick(["build-9", "build-10", "latest"], policy=NumericalPolicy(), filter=flt)
            == "build-10"
        )


class TestFilter:
    @pytest.mark.parametrize(
        ("flt", "tag", "reason"),
        [
            pytest.param(TagFilter(glob="myapp-V*"), "myapp-V1", None, id="glob-kept"),
            pytest.param(
                TagFilter(glob="myapp-V*"),
                "x-myapp-V1",
                "does not match glob 'myapp-V*'",
                id="glob-whole-tag",
            ),
            pytest.param(TagFilter(glob="v[0-9]?"), "v1a", None, id="glob-class-and-any"),
            pytest.param(
                TagFilter(glob="v[!0-9]*"),
                "v1",
                "does not match glob 'v[!0-9]*'",
                id="glob-negated",
            ),
            pytest.param(TagFilter(pattern="rc"), "1.0.0-rc1", None, id="pattern-anywhere"),
            pytest.param(
                TagFilter(pattern="^rc"), "1.0.0-rc1", "does not match pattern '^rc'", id="anchored"
            ),
            pytest.param(
                TagFilter(),
                "myapp.sig",
                versions.SIGNATURE_REASON,
                id="signature-default",
            ),
            pytest.param(TagFilter(), "sha256-abc.att", versions.SIGNATURE_REASON, id="referrer"),
            pytest.param(
                TagFilter(exclude_signatures=False), "myapp.sig", None, id="signatures-kept"
            ),
            pytest.param(
                TagFilter(glob="*", exclude=("*-debug",)),
                "1-debug",
                "excluded by exclude glob '*-debug'",
                id="exclusion-beats-inclusion",
            ),
            pytest.param(
                TagFilter(exclude_pattern=r"-rc\d+$"),
                "1.0-rc2",
                r"excluded by exclude_pattern '-rc\d+$'",
                id="exclude-pattern",
            ),
            pytest.param(
                TagFilter(pattern=r"^v(?P<major>\d+)(?:\.(?P<minor>\d+))?$", extract="$minor"),
                "v1",
                "extract '$minor' is empty: group 'minor' did not take part in the match",
                id="extract-group-did-not-match",
            ),
        ],
    )
    def test_explain(self, flt: TagFilter, tag: str, reason: str | None) -> None:
        """The filter keeps or drops a tag, and says why, in the documented order."""
        assert flt.explain(tag) == reason
        assert (flt.key(tag) is None) is (reason is not None)

    @pytest.mark.parametrize(
        ("template", "key"),
        [
            pytest.param("$1", "1.2", id="number"),
            pytest.param("${major}.${minor}", "1.2", id="braces"),
            pytest.param("$major-$$", "1-$", id="dollar-literal"),
            pytest.param("${1}x", "1.2x", id="braces-then-text"),
        ],
    )
    def test_extract(self, template: str, key: str) -> None:
        """Extract templates follow Go's Regexp.Expand syntax."""
        flt = TagFilter(pattern=r"^v((?P<major>\d+)\.(?P<minor>\d+))$", extract=template)
        assert flt.key("v1.2") == key

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param(
                {"pattern": "^(?=v)v"},
                "lookarounds such as (?=...) and (?<!...) are not supported",
                id="lookahead-rejected",
            ),
            pytest.param(
                {"pattern": r"(a)\1"},
                "backreferences are not supported",
                id="backreference-rejected",
            ),
            pytest.param(
                {"pattern": "v(1"}, "is not a valid RE2 regular expression", id="invalid-regex"
            ),
            pytest.param(
                {"exclude_pattern": "(?<!x)y"},
                "filter.exclude_pattern '(?<!x)y'",
                id="exclude-lookbehind",
            ),
            pytest.param({"glob": "v[0-9"}, "is never closed", id="unclosed-glob-class"),
            pytest.param({"glob": "a", "pattern": "b"}, "not both", id="glob-and-pattern"),
            pytest.param({"extract": "$1"}, "needs filter.pattern", id="extract-without-pattern"),
            pytest.param(
                {"pattern": "^v(?P<n>.+)$", "extract": "$version"},
                "refers to group 'version', which the pattern",
                id="extract-unknown-group",
            ),
            pytest.param(
                {"pattern": "^v(.+)$", "extract": "$1x"}, "write ${1}x", id="extract-ambiguous-name"
            ),
            pytest.param(
                {"pattern": "^v(.+)$", "extract": "fixed"}, "names no group", id="extract-no-group"
            ),
        ],
    )
    def test_invalid(self, kwargs: dict[str, str], message: str) -> None:
        """A filter that cannot be used is refused when it is built, with a clear message."""
        with pytest.raises(InvalidVersionPolicy) as caught:
            TagFilter(**kwargs)  # type: ignore[arg-type]
        assert message in str(caught.value)

    def test_non_ascii_tags_use_re2(self) -> None:
        """Tags outside printable ASCII are matched by RE2 itself, with the same results."""
        flt = TagFilter(pattern=r"^v(?P<n>\d+)$", extract="$n")
        assert flt.keys(["v1", "v２", "v3\n"]) == ["1", None, None]


class TestNewestAndDigest:
    def test_newest(self) -> None:
        """The newest policy picks the latest creation time; unknown times are skipped."""
        base = datetime(2024, 5, 1, tzinfo=UTC)
        tags = [
            TagInfo("a", created=base),
            TagInfo("b", created=base + timedelta(hours=1)),
            TagInfo(
                "c", created=(base + timedelta(hours=2)).astimezone(timezone(timedelta(hours=5)))
            ),
            TagInfo("d"),
        ]
        selection = versions.select(tags, filter=NO_FILTER, policy=NewestPolicy())
        assert selection.winner == tags[2]
        assert {r.tag: r.reason for r in selection.rows()}["d"] == "skipped: creation time unknown"

    def test_newest_cap(self) -> None:
        """Only max_candidates tags are inspected, the greatest tag strings, and it says so."""
        base = datetime(2024, 5, 1, tzinfo=UTC)
        tags = [TagInfo(f"t{i}", created=base + timedelta(minutes=i)) for i in range(10)]
        policy = NewestPolicy(max_candidates=3)
        selection = versions.select(tags, filter=NO_FILTER, policy=policy)
        assert selection.winner == tags[9]
        assert "inspected 3 tags, max_candidates 3" in selection.reason
        assert versions.newest_candidates(
            [t.tag for t in tags], filter=NO_FILTER, policy=policy
        ) == [
            "t9",
            "t8",
            "t7",
        ]
        reason = {r.tag: r.reason for r in selection.rows()}["t0"]
        assert reason.startswith("not inspected: only the 3 greatest tags")

    def test_digest_follows_tag(self) -> None:
        """The digest policy follows one tag; a new digest behind it is a new version."""
        old = Digest.of(b"old")
        new = Digest.of(b"new")
        tags = [TagInfo("stable", digest=new), TagInfo("v2", digest=old)]
        selection = versions.select(tags, filter=NO_FILTER, policy=DigestPolicy(tag="stable"))
        assert selection.winner == tags[0]
        assert versions.is_new_version(selection, old) is True
        assert versions.is_new_version(selection, new) is False

    @pytest.mark.parametrize(
        ("flt", "reason"),
        [
            pytest.param(NO_FILTER, "the followed tag 'stable' is not in the list", id="missing"),
            pytest.param(
                TagFilter(exclude=("stab*",)),
                "the followed tag 'stable' is dropped by the filter: excluded by exclude glob",
                id="filtered",
            ),
        ],
    )
    def test_digest_nothing(self, flt: TagFilter, reason: str) -> None:
        """A followed tag that is absent or filtered out selects nothing, with the reason."""
        tags = [TagInfo("v1")] + ([TagInfo("stable")] if flt is not NO_FILTER else [])
        selection = versions.select(tags, filter=flt, policy=DigestPolicy(tag="stable"))
        assert selection.winner is None
        assert reason in selection.reason


class TestNothingQualifies:
    @pytest.mark.parametrize(
        ("tags", "reason"),
        [
            pytest.param([], "no tag qualifies: the tag list is empty", id="empty"),
            pytest.param(
                ["x.sig"], "no tag qualifies: the filter dropped all 1 tags", id="all-dropped"
            ),
            pytest.param(
                ["latest"],
                "no tag qualifies: 1 of 1 tags passed the filter, but none fits the policy "
                "(highest stable version)",
                id="none-fits",
            ),
        ],
    )
    def test_reason(self, tags: list[str], reason: str) -> None:
        """When nothing qualifies, the selection says which stage removed everything."""
        selection = versions.select(
            [TagInfo(t) for t in tags], filter=NO_FILTER, policy=SemverPolicy()
        )
        assert selection.winner is None
        assert selection.reason == reason


class TestDefaults:
    def test_template(self) -> None:
        """A default tag template resolves from parameters."""
        assert (
            versions.resolve_template("myapp-V${R_VERSION}", {"R_VERSION": "1.4.2"})
            == "myapp-V1.4.2"
        )

    def test_missing_parameter(self) -> None:
        """A missing parameter is named, with the parameters that are set."""
        with pytest.raises(InvalidVersionPolicy) as caught:
            versions.resolve_template("myapp-V${R_VERSION}", {"BRANCH": "main"})
        assert str(caught.value) == (
            "default 'myapp-V${R_VERSION}' needs parameter 'R_VERSION', which is not set; "
            "pass it as a run parameter or set it in the environment (set: BRANCH)"
        )

    def test_requested_tag_refused(self) -> None:
        """An explicitly requested tag that the filter drops is refused with the reason."""
        with pytest.raises(TagRefused) as caught:
            versions.check_requested(
                "myapp-V1.0-debug", TagFilter(glob="myapp-V*", exclude=("*-debug",))
            )
        assert str(caught.value) == (
            "tag 'myapp-V1.0-debug' is refused by the source's filter: "
            "excluded by exclude glob '*-debug'"
        )

    def test_resolve_default(self) -> None:
        """Without a fixed default the policy picks; with one, the template is used and checked."""
        tags = [TagInfo("myapp-V1.0.0"), TagInfo("myapp-V1.1.0")]
        flt = TagFilter(glob="myapp-V*")
        policy = AlphabeticalPolicy()
        assert versions.resolve_default(tags, filter=flt, policy=policy) == tags[1]
        fixed = versions.resolve_default(
            tags, filter=flt, policy=policy, default="myapp-V${V}", params={"V": "1.0.0"}
        )
        assert fixed == tags[0]
        with pytest.raises(TagRefused):
            versions.resolve_default(tags, filter=flt, policy=policy, default="other")


# --- the fast paths decide exactly what the general, tag-by-tag path decides ----------

FILTERS = [
    TagFilter(),
    TagFilter(exclude_signatures=False),
    TagFilter(glob="app-*", exclude=("*-debug",)),
    TagFilter(pattern=r"^app-(?P<v>.+)$", extract="$v", exclude=("*-debug",)),
    TagFilter(
        pattern=r"^(?:my)?app-V?(.*)$", extract="$1", exclude=("*-debug", "x*", "*[0-9]-rc?")
    ),
    TagFilter(pattern=r"(\d+)\.(\d+)", extract="${1}.${2}.0"),
    TagFilter(pattern=r"^v|^[0-9]", exclude_pattern=r"-rc\.?\d+$"),
    TagFilter(pattern=r"^app-(\pN+\.\pN+\.\pN+)$", extract="$1"),  # RE2 only
    TagFilter(pattern=r"^(?P<v>[^-]*)(-debug)?$", extract="$v", exclude_signatures=False),
    # Matches signature and excluded tags too, so the affix exclusions alone drop them.
    TagFilter(pattern=r"^(?:sha256-|x)?(?P<v>.*?)(?:\.sig|\.att)?$", extract="$v", exclude=("x*",)),
]
POLICIES: list[versions.VersionPolicy] = [
    SemverPolicy(),
    SemverPolicy(range=">=1.0.0 <3.0.0"),
    SemverPolicy(range=">=1.0.0-0 <3.0.0"),
    SemverPolicy(range="^1 || ~2.3"),
    SemverPolicy(range=">1.2.x"),
    SemverPolicy(range="<=7 !=2.0.0"),
    SemverPolicy(range="1.2 - 3-rc.1"),
    SemverPolicy(range=">=1.1, <3, !=1.2.3 || >3.0.0-0 <3.1 || 0.x"),
    AlphabeticalPolicy(),
    AlphabeticalPolicy(order=Order.DESC),
    NumericalPolicy(),
    NumericalPolicy(order=Order.DESC),
]
# Small numbers, so that equal versions (ties), range bounds and prereleases inside
# the ranges above are common; plus the broken-version corners from test_semver.
SMALL_VERSIONS = st.tuples(
    st.sampled_from(["", "", "v"]),
    st.lists(st.integers(0, 3).map(str), min_size=3, max_size=3).map(".".join),
    st.sampled_from(["", "", "-rc.1", "-0", "-alpha", "-1"]),
    st.sampled_from(["", "", "+b", "+b.2"]),
).map("".join)
VERSIONS = st.one_of(
    SMALL_VERSIONS,
    SMALL_VERSIONS,
    valid_version(),
    st.tuples(valid_version(), st.sampled_from(BREAKS)).map(lambda pair: pair[1](pair[0])),
)
ONE_TAG = st.one_of(
    st.tuples(
        st.sampled_from(["", "app-", "myapp-V", "x", "app-V", "sha256-"]),
        VERSIONS,
        st.sampled_from(["", "", "", "-debug", ".sig", ".att", "-rc1"]),
    ).map("".join),
    st.sampled_from(["sha256-abc", "latest", "12", "010", "1.5", "-3", "main", "é1.0.0"]),
    st.text(alphabet="apv0123456789.-+_", max_size=8),
)
# Several spellings of one version (equal keys or equal versions): ties.
TIED_TAGS = st.tuples(
    st.lists(st.integers(0, 2).map(str), min_size=3, max_size=3).map(".".join),
    st.lists(
        st.tuples(
            st.sampled_from(["", "v", "app-", "app-v", "myapp-V"]),
            st.sampled_from(["", "+b", "+c.1", "-debug"]),
        ),
        min_size=2,
        max_size=6,
    ),
).map(lambda pair: [prefix + pair[0] + suffix for prefix, suffix in pair[1]])
TAGS = st.lists(st.one_of(ONE_TAG.map(lambda tag: [tag]), TIED_TAGS), max_size=12).map(
    lambda groups: [tag for group in groups for tag in group]
)
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def general_keys(tags: list[str], flt: TagFilter) -> list[str | None]:
    """Keys tag by tag: the filter's own explanation, and RE2 for the pattern and extract."""
    pattern = _tagmatch.compile_pattern(flt.pattern, field="t") if flt.pattern else None
    keys: list[str | None] = []
    for tag in tags:
        if flt.explain(tag) is not None:
            keys.append(None)
        elif flt.extract is None or pattern is None:
            keys.append(tag)
        else:
            match = pattern.re2_search(tag)
            assert match is not None
            keys.append(_tagmatch.expand(_tagmatch.compile_extract(flt.extract, pattern), match)[0])
    return keys


def general_values(keys: list[str | None], policy: versions.VersionPolicy) -> list[object]:
    """Ordering values key by key: parse_version and Range.admits, or the number grammar."""
    if isinstance(policy, SemverPolicy):
        admits = semver.parse_range(policy.range).admits if policy.range else None
        values: list[object] = []
        for key in keys:
            version = semver.parse_version(key) if key is not None else None
            if version is not None and (admits(version) if admits else version[6] == 1):
                values.append(version)
            else:
                values.append(None)
        return values
    if isinstance(policy, NumericalPolicy):
        if any(key is not None and NUMBER.fullmatch(key) is None for key in keys):
            return [None] * len(keys)  # the rule fails: nothing is ranked
        return [None if key is None else int(key) if key.isdigit() else float(key) for key in keys]
    return list(keys)


class TestFastPathsAgreeWithTheGeneralPath:
    @pytest.mark.parametrize("policy", [pytest.param(p, id=repr(p)) for p in POLICIES])
    @settings(max_examples=150, deadline=None)
    @given(tags=TAGS, flt=st.sampled_from(FILTERS))
    def test_same_decision(
        self, tags: list[str], flt: TagFilter, policy: versions.VersionPolicy
    ) -> None:
        """select() keeps, orders and picks exactly as the tag-by-tag general path does."""
        selection = versions.select([TagInfo(t) for t in tags], filter=flt, policy=policy)
        keys = general_keys(tags, flt)
        values = general_values(keys, policy)
        assert list(selection.keys) == keys
        assert list(selection.values) == values
        ranked = [
            (value, tag) for value, tag in zip(values, tags, strict=True) if value is not None
        ]
        assert selection.candidates == len(ranked)
        if not ranked:
            assert selection.winner is None
            return
        highest = not isinstance(policy, AlphabeticalPolicy | NumericalPolicy) or (
            policy.order is Order.ASC
        )
        best = max(value for value, _ in ranked) if highest else min(v for v, _ in ranked)
        tied = [tag for value, tag in ranked if value == best]
        assert selection.winner is not None
        assert selection.winner.tag == max(tied)
        assert (f"; {len(tied)} tags share its key" in selection.reason) is (len(tied) > 1)
