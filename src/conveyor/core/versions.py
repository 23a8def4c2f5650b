"""Version filters and selection policies: which tag an artifact source takes, and why.

Pure: the registry adapter lists tags (and, for ``newest``, reads creation
times); this module only decides. Semantics follow Flux's ImagePolicy where the
two overlap; docs/selection.md states them precisely, with the differences.

Order of work for every tag, in this order, first refusal wins:

1. default exclusions (``*.sig``, ``*.att``, ``*.sbom``, ``sha256-*``), unless
   ``exclude_signatures`` is off;
2. ``exclude`` globs, then ``exclude_pattern`` (exclusion beats inclusion);
3. ``glob`` (whole tag) or ``pattern`` (RE2, anywhere unless anchored);
4. ``extract`` builds the key the policy orders by (the whole tag otherwise);
5. the policy skips keys it cannot order (not a full X.Y.Z, out of range, ...)
   and picks the greatest of the rest; equal keys go to the greatest tag string.

For speed (100,000 tags in a few hundred milliseconds; docs/performance.md)
nothing here allocates an object
per tag on the main path: the explanation is kept as parallel tuples and
only turned into rows when asked for (``Selection.rows()``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from conveyor.core import _tagmatch, semver, templates
from conveyor.core.errors import InvalidVersionPolicy, TagRefused
from conveyor.core.images import Digest

SIGNATURE_SUFFIXES = (".sig", ".att", ".sbom")  # cosign's tag-based signatures and attestations
SIGNATURE_PREFIX = "sha256-"  # OCI referrers tag-schema fallback: sha256-<hex>
SIGNATURE_REASON = (
    "excluded: signature, attestation or referrer tag (*.sig, *.att, *.sbom, sha256-*); "
    "set exclude_signatures: false to keep it"
)
DEFAULT_MAX_CANDIDATES = 100  # one image config read per candidate; keep registries happy


def check_pattern(text: str, *, field: str) -> None:
    """Raise InvalidVersionPolicy if ``text`` is not an RE2 pattern (lookarounds, ...)."""
    _tagmatch.compile_pattern(text, field=field)


def check_glob(text: str, *, field: str) -> None:
    """Raise InvalidVersionPolicy if ``text`` is not a usable glob."""
    _tagmatch.compile_globs([text], field=field)


def _is_signature(tag: str) -> bool:
    return tag.endswith(SIGNATURE_SUFFIXES) or tag.startswith(SIGNATURE_PREFIX)


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag as listed by a registry, with what the adapter learned about it."""

    tag: str
    created: datetime | None = None
    digest: Digest | None = None


class Order(StrEnum):
    """Sort order of a policy; the winner is the last tag in that order (as Flux)."""

    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True, slots=True, kw_only=True)
class TagFilter:
    """Which tags are candidates at all, and which key the policy orders them by.

    Raises InvalidVersionPolicy at construction when a glob, pattern or extract
    cannot be used, so a filter that exists is a filter that works.
    """

    glob: str | None = None
    pattern: str | None = None
    extract: str | None = None
    exclude: tuple[str, ...] = ()
    exclude_pattern: str | None = None
    exclude_signatures: bool = True
    _glob: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _pattern: _tagmatch.Pattern | None = field(init=False, repr=False, compare=False)
    _extract: tuple[str | int, ...] | None = field(init=False, repr=False, compare=False)
    _exclude: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _exclude_pattern: _tagmatch.Pattern | None = field(init=False, repr=False, compare=False)
    _affixes: tuple[list[str], list[str], re.Pattern[str] | None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.glob is not None and self.pattern is not None:
            raise InvalidVersionPolicy(
                "filter: give either glob (whole tag) or pattern (regex), not both"
            )
        if self.extract is not None and self.pattern is None:
            raise InvalidVersionPolicy(
                "filter.extract needs filter.pattern with a group to extract; "
                r"write e.g. pattern: '^myapp-V(?P<version>.+)$' and extract: '$version'"
            )
        globs = (self.glob,) if self.glob is not None else ()
        pattern = None
        if self.pattern is not None:
            pattern = _tagmatch.compile_pattern(self.pattern, field="filter.pattern")
        extract = None
        if self.extract is not None and pattern is not None:
            extract = _tagmatch.compile_extract(self.extract, pattern)
        exclude_pattern = None
        if self.exclude_pattern is not None:
            exclude_pattern = _tagmatch.compile_pattern(
                self.exclude_pattern, field="filter.exclude_pattern"
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "_glob", _tagmatch.compile_globs(globs, field="filter.glob"))
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_extract", extract)
        object.__setattr__(
            self, "_exclude", _tagmatch.compile_globs(self.exclude, field="filter.exclude")
        )
        object.__setattr__(self, "_exclude_pattern", exclude_pattern)
        suffixes, prefixes, others = _tagmatch.simple_affixes(self.exclude)
        if self.exclude_signatures:
            suffixes += SIGNATURE_SUFFIXES
            prefixes.append(SIGNATURE_PREFIX)
        other_globs = _tagmatch.compile_globs(others, field="filter.exclude")
        object.__setattr__(self, "_affixes", (suffixes, prefixes, other_globs))

    def keys(self, tags: Sequence[str]) -> list[str | None]:
        """Per tag, the key the policy orders by, or None when the filter drops the tag.

        This is the hot path (100,000 tags); ``explain`` says why a tag was dropped.
        Exclusions come first, as documented, and are cheap string tests for the
        usual ``*-suffix``/``prefix-*`` globs, so excluded tags never reach the pattern.
        """
        plain = _tagmatch.is_plain(tags, "\n".join(tags))
        fused = self._affix_and_group_keys(tags, plain=plain)
        if fused is not None:
            return fused
        return self._included_keys(self._not_excluded(tags, plain=plain), plain=plain)

    def _affix_and_group_keys(self, tags: Sequence[str], *, plain: bool) -> list[str | None] | None:
        """The common rule in one pass: affix exclusions, then a pattern with one group.

        None when the rule has more than that (other exclusions, a glob, a template
        extract); the two-pass path below gives the same keys for every rule.
        """
        suffixes, prefixes, other_globs = self._affixes
        extract = self._extract
        if (
            other_globs is not None
            or self._exclude_pattern is not None
            or self._pattern is None
            or extract is None
            or len(extract) != 1
            or not isinstance(extract[0], int)
        ):
            return None
        ends, starts, group = tuple(suffixes), tuple(prefixes), extract[0]
        search = self._pattern.searcher(plain=plain)
        return [
            None
            if tag.endswith(ends) or tag.startswith(starts) or (match := search(tag)) is None
            else match.group(group) or None
            for tag in tags
        ]

    def _not_excluded(self, tags: Sequence[str], *, plain: bool) -> list[str | None]:
        """The tags, with None in place of each one an exclusion removes."""
        suffixes, prefixes, other_globs = self._affixes
        ends, starts = tuple(suffixes), tuple(prefixes)
        kept: list[str | None] = [
            None if tag.endswith(ends) or tag.startswith(starts) else tag for tag in tags
        ]
        exclude = other_globs.fullmatch if other_globs is not None else None
        exclude_search = (
            self._exclude_pattern.searcher(plain=plain) if self._exclude_pattern else None
        )
        if exclude is not None:
            kept = [None if tag is None or exclude(tag) is not None else tag for tag in kept]
        if exclude_search is not None:
            kept = [None if tag is None or exclude_search(tag) is not None else tag for tag in kept]
        return kept

    def _included_keys(self, tags: list[str | None], *, plain: bool) -> list[str | None]:
        """The keys of the tags that glob or pattern keep (None stays None)."""
        if self._pattern is not None:
            search = self._pattern.searcher(plain=plain)
            extract = self._extract
            if extract is None:
                return [None if tag is None or search(tag) is None else tag for tag in tags]
            if len(extract) == 1 and isinstance(extract[0], int):
                group = extract[0]
                return [
                    None
                    if tag is None or (match := search(tag)) is None
                    else match.group(group) or None
                    for tag in tags
                ]
            return [
                None
                if tag is None or (match := search(tag)) is None
                else _tagmatch.expand(extract, match)[0] or None
                for tag in tags
            ]
        if self._glob is not None:
            fullmatch = self._glob.fullmatch
            return [None if tag is None or fullmatch(tag) is None else tag for tag in tags]
        return tags

    def explain(self, tag: str) -> str | None:
        """Why this filter drops the tag (first reason in the documented order), or None."""
        if self.exclude_signatures and _is_signature(tag):
            return SIGNATURE_REASON
        if self._exclude is not None and self._exclude.fullmatch(tag) is not None:
            return self._exclude_reason(tag)
        if self._exclude_pattern is not None and self._exclude_pattern.re2_search(tag) is not None:
            return f"excluded by exclude_pattern '{self.exclude_pattern}'"
        if self._glob is not None and self._glob.fullmatch(tag) is None:
            return f"does not match glob '{self.glob}'"
        if self._pattern is None:
            return None
        match = self._pattern.re2_search(tag)
        if match is None:
            return f"does not match pattern '{self.pattern}'"
        if self._extract is None:
            return None
        value, missing = _tagmatch.expand(self._extract, match)
        return None if value else self._empty_key_reason(missing)

    def key(self, tag: str) -> str | None:
        """The key of one tag, or None when the filter drops it."""
        return self.keys([tag])[0]

    def _exclude_reason(self, tag: str) -> str:
        for glob in self.exclude:
            if _tagmatch.compile_globs([glob], field="filter.exclude").fullmatch(tag):  # type: ignore[union-attr]
                return f"excluded by exclude glob '{glob}'"
        return "excluded by an exclude glob"  # pragma: no cover - one of them matched

    def _empty_key_reason(self, missing: list[int]) -> str:
        if missing and self._pattern is not None:
            by_index = {index: name for name, index in self._pattern.names.items()}
            names = ", ".join(f"'{by_index.get(i, i)}'" for i in missing)
            return (
                f"extract '{self.extract}' is empty: group {names} did not take part in the match"
            )
        return f"extract '{self.extract}' gave an empty key"


@dataclass(frozen=True, slots=True, kw_only=True)
class SemverPolicy:
    """The greatest version satisfying a Masterminds/semver range (any stable one without)."""

    range: str | None = None
    _range: semver.Range | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = semver.parse_range(self.range) if self.range is not None else None
        object.__setattr__(self, "_range", parsed)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlphabeticalPolicy:
    """The last key in byte order (``asc``: greatest wins; ``desc``: smallest wins)."""

    order: Order = Order.ASC


@dataclass(frozen=True, slots=True, kw_only=True)
class NumericalPolicy:
    """The last key in numeric order; every candidate key must be a decimal number."""

    order: Order = Order.ASC


@dataclass(frozen=True, slots=True, kw_only=True)
class NewestPolicy:
    """The most recently created image, inspecting at most ``max_candidates`` tags."""

    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise InvalidVersionPolicy(
                f"policy.newest.max_candidates is {self.max_candidates}; write a number from 1 up"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestPolicy:
    """Follow one mutable tag: whatever digest it points at is the version."""

    tag: str

    def __post_init__(self) -> None:
        if not self.tag:
            raise InvalidVersionPolicy("policy.digest.tag is empty; write e.g. tag: stable")


VersionPolicy: TypeAlias = (
    SemverPolicy | AlphabeticalPolicy | NumericalPolicy | NewestPolicy | DigestPolicy
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagVerdict:
    """One row of an explanation: what happened to one tag."""

    tag: str
    kept: bool  # the filter kept it
    key: str | None  # the extracted key (the tag itself without extract)
    rank: int | None  # 1 is the winner; None when not a candidate
    reason: str  # why it was dropped or skipped, or why it ranks where it does


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The chosen tag (or None) and everything needed to explain the choice.

    Per-tag reasons are worked out only when ``rows()`` is called, so that
    selecting among 100,000 tags does not build 100,000 explanations.
    """

    winner: TagInfo | None
    reason: str  # why the winner won, or why nothing qualified
    candidates: int
    tags: tuple[TagInfo, ...]
    keys: tuple[str | None, ...]  # None: the filter dropped the tag
    values: tuple[object, ...]  # ordering value per candidate; None: not a candidate
    filter: TagFilter
    policy: VersionPolicy

    def rows(self) -> list[TagVerdict]:
        """Every tag in input order with its verdict and rank (built on demand)."""
        ranks = self._ranks()
        inspected = _inspected(self.tags, self.keys, self.policy)
        rows = []
        for i, info in enumerate(self.tags):
            key = self.keys[i]
            rank = ranks.get(i)
            if key is None:
                reason = self.filter.explain(info.tag) or "dropped by the filter"
            elif rank is None:
                reason = _skip_reason(self.policy, info, key, inspected=i in inspected)
            elif rank == 1:
                reason = "winner: " + self.reason
            else:
                reason = "candidate"
            rows.append(
                TagVerdict(tag=info.tag, kept=key is not None, key=key, rank=rank, reason=reason)
            )
        return rows

    def _ranks(self) -> dict[int, int]:
        if self.winner is None:
            return {}
        indexes = [i for i, value in enumerate(self.values) if value is not None]
        indexes.sort(key=lambda i: self.tags[i].tag, reverse=True)
        indexes.sort(key=lambda i: self.values[i], reverse=_highest_wins(self.policy))  # type: ignore[arg-type,return-value]
        return {index: rank for rank, index in enumerate(indexes, start=1)}


def _end(order: Order) -> str:
    return "greatest" if order is Order.ASC else "smallest"


def _highest_wins(policy: VersionPolicy) -> bool:
    if isinstance(policy, AlphabeticalPolicy | NumericalPolicy):
        return policy.order is Order.ASC
    return True


def select(tags: Sequence[TagInfo], *, filter: TagFilter, policy: VersionPolicy) -> Selection:
    """Pick the tag the policy prefers among those the filter keeps; never raises for data.

    A numerical policy over keys that are not numbers selects nothing and says
    which tags to filter out; an empty list selects nothing.
    """
    names = [info.tag for info in tags]
    keys = filter.keys(names)
    failure: str | None = None
    if isinstance(policy, SemverPolicy):
        values = _by_semver(keys, policy)
        why = (
            f"highest version in range '{policy.range}'"
            if policy.range
            else "highest stable version"
        )
    elif isinstance(policy, AlphabeticalPolicy):
        values = list(keys)
        why = f"last in byte order ({policy.order}: {_end(policy.order)} key wins)"
    elif isinstance(policy, NumericalPolicy):
        values, failure = _by_number(keys)
        why = f"last in numeric order ({policy.order}: {_end(policy.order)} number wins)"
    elif isinstance(policy, NewestPolicy):
        values, inspected = _by_created(tags, keys, policy)
        why = (
            f"newest creation time (inspected {inspected} tags, "
            f"max_candidates {policy.max_candidates})"
        )
    else:
        values, failure = _by_digest(names, keys, filter, policy)
        why = f"follows tag '{policy.tag}'"
    best, count, ties = _best(names, values, highest=_highest_wins(policy))
    if best is None:
        winner = None
        reason = failure or _nothing(names, keys, why)
    else:
        winner = tags[best]
        reason = f"{why}, among {count} candidate{'s' if count != 1 else ''}"
        if ties > 1:
            reason += f"; {ties} tags share its key, the greatest tag string wins"
    return Selection(
        winner=winner,
        reason=reason,
        candidates=count,
        tags=tuple(tags),
        keys=tuple(keys),
        values=tuple(values),
        filter=filter,
        policy=policy,
    )


def _best(names: list[str], values: list[object], *, highest: bool) -> tuple[int | None, int, int]:
    """Index of the winner, number of candidates, and how many share the winner's value."""
    best: int | None = None
    best_value: Any = None
    ties = count = 0
    for i, value in enumerate(values):
        if value is None:
            continue
        count += 1
        if best is None or ((value > best_value) if highest else (value < best_value)):
            best, best_value, ties = i, value, 1
        elif value == best_value:
            ties += 1
            if names[i] > names[best]:
                best = i
    return best, count, ties


def _by_semver(keys: list[str | None], policy: SemverPolicy) -> list[object]:
    if policy._range is None:  # any stable version
        return list(semver.parse_versions(keys, stable_only=True))
    stable_only = not policy._range.admits_prereleases
    versions = semver.parse_versions(keys, stable_only=stable_only)
    interval = policy._range.interval()
    if interval is not None:  # the common '>=A <B': test inline, no call per tag
        low, high, _ = interval  # without prereleases in the range, versions has none
        return [v if v is not None and low <= v < high else None for v in versions]
    admits = policy._range.compile()
    return [v if v is not None and admits(v) else None for v in versions]


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _by_number(keys: list[str | None]) -> tuple[list[object], str | None]:
    values: list[object] = [None] * len(keys)
    bad: list[str] = []
    fullmatch = _NUMBER.fullmatch
    for i, key in enumerate(keys):
        if key is None:
            continue
        if fullmatch(key) is None:
            bad.append(key)
            continue
        values[i] = int(key) if key.isdigit() else float(key)
    if not bad:
        return values, None
    shown = ", ".join(f"'{k}'" for k in bad[:5]) + (
        f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    )
    message = (
        f"the numerical policy needs numbers, but {len(bad)} kept "
        f"{'key is' if len(bad) == 1 else 'keys are'} not: {shown}; "
        "add a filter that keeps only numbers, e.g. pattern: '^[0-9]+$' "
        "(or pattern: '^build-(?P<n>[0-9]+)$' with extract: '$n')"
    )
    return [None] * len(keys), message


def _inspected(
    tags: Sequence[TagInfo], keys: Sequence[str | None], policy: VersionPolicy
) -> set[int]:
    """For newest: the indexes whose creation time is looked at (the cap applied)."""
    if not isinstance(policy, NewestPolicy):
        return set()
    kept = [i for i, key in enumerate(keys) if key is not None]
    kept.sort(key=lambda i: tags[i].tag, reverse=True)
    return set(kept[: policy.max_candidates])


def _by_created(
    tags: Sequence[TagInfo], keys: list[str | None], policy: NewestPolicy
) -> tuple[list[object], int]:
    values: list[object] = [None] * len(keys)
    inspected = _inspected(tags, keys, policy)
    for i in inspected:
        created = tags[i].created
        if created is not None:
            values[i] = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    return values, len(inspected)


def newest_candidates(tags: Sequence[str], *, filter: TagFilter, policy: NewestPolicy) -> list[str]:
    """The tags whose image config the adapter should read for ``newest`` (at most the cap)."""
    keys = filter.keys(tags)
    kept = sorted(
        (tag for tag, key in zip(tags, keys, strict=True) if key is not None), reverse=True
    )
    return kept[: policy.max_candidates]


def _by_digest(
    names: list[str],
    keys: list[str | None],
    filter: TagFilter,
    policy: DigestPolicy,
) -> tuple[list[object], str | None]:
    values: list[object] = [None] * len(keys)
    if policy.tag not in names:
        return values, f"no tag qualifies: the followed tag '{policy.tag}' is not in the list"
    index = names.index(policy.tag)
    if keys[index] is None:
        why = filter.explain(policy.tag)
        return (
            values,
            f"no tag qualifies: the followed tag '{policy.tag}' is dropped by the filter: {why}",
        )
    values[index] = 1
    return values, None


def _skip_reason(policy: VersionPolicy, info: TagInfo, key: str, *, inspected: bool) -> str:
    """Why a tag the filter kept is not a candidate of the policy."""
    if isinstance(policy, SemverPolicy):
        version = semver.parse_version(key)
        if version is None:
            return "skipped: not a full X.Y.Z[-pre][+build] version (optional leading v)"
        if policy._range is None:
            return "skipped: prerelease; without a range only stable versions qualify"
        if semver.is_prerelease(version) and not policy._range.admits_prereleases:
            return (
                f"skipped: prerelease, and range '{policy.range}' names no prerelease "
                "(write one, e.g. '>=1.0.0-0', to admit prereleases)"
            )
        return f"skipped: {semver.format_key(version)} is outside range '{policy.range}'"
    if isinstance(policy, NumericalPolicy):
        if _NUMBER.fullmatch(key) is None:
            return "not a number: the numerical policy cannot order it"
        return "not ranked: other keys are not numbers"
    if isinstance(policy, NewestPolicy):
        if not inspected:
            return (
                f"not inspected: only the {policy.max_candidates} greatest tags (byte order) "
                "are inspected (max_candidates); narrow the filter or raise max_candidates"
            )
        return "skipped: creation time unknown"
    if isinstance(policy, DigestPolicy):
        return f"skipped: the digest policy follows tag '{policy.tag}' only"
    return "skipped"  # pragma: no cover - alphabetical ranks every kept tag


def _nothing(names: list[str], keys: list[str | None], why: str) -> str:
    if not names:
        return "no tag qualifies: the tag list is empty"
    kept = sum(key is not None for key in keys)
    if kept == 0:
        return f"no tag qualifies: the filter dropped all {len(names)} tags"
    return (
        f"no tag qualifies: {kept} of {len(names)} tags passed the filter, "
        f"but none fits the policy ({why})"
    )


def is_new_version(selection: Selection, previous: Digest | None) -> bool:
    """For a followed tag: whether the winner's digest differs from the one seen before."""
    if selection.winner is None or selection.winner.digest is None:
        return False
    return selection.winner.digest != previous


# --- defaults and requested tags --------------------------------------------------


def resolve_template(template: str, params: Mapping[str, str]) -> str:
    """Fill ``${NAME}`` from params (``$$`` is a literal ``$``); names the missing parameter."""
    try:
        names = templates.placeholders(template)
    except templates.TemplateError:
        raise InvalidVersionPolicy(
            f"default '{template}': a '$' must start ${{NAME}} (or write $$ for a literal $)"
        ) from None
    missing = next((name for name in names if name not in params), None)
    if missing is not None:
        known = ", ".join(sorted(params)) or "none"
        raise InvalidVersionPolicy(
            f"default '{template}' needs parameter '{missing}', which is not set; "
            f"pass it as a run parameter or set it in the environment (set: {known})"
        )
    return templates.render(template, params)


def check_requested(tag: str, filter: TagFilter) -> None:
    """Refuse an explicitly requested tag that the filter drops, saying why."""
    reason = filter.explain(tag)
    if reason is not None:
        raise TagRefused(f"tag '{tag}' is refused by the source's filter: {reason}")


def resolve_default(
    tags: Sequence[TagInfo],
    *,
    filter: TagFilter,
    policy: VersionPolicy,
    default: str | None = None,
    params: Mapping[str, str] | None = None,
) -> TagInfo | None:
    """What a run takes when the user names nothing: the fixed default, or the policy's pick."""
    if default is None:
        return select(tags, filter=filter, policy=policy).winner
    tag = resolve_template(default, params or {})
    check_requested(tag, filter)
    for info in tags:
        if info.tag == tag:
            return info
    return TagInfo(tag)
