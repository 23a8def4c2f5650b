"""The filter/policy YAML syntax: valid rules become core objects, invalid ones are located."""

from __future__ import annotations

import pytest

from conveyor.config import selection
from conveyor.core import versions
from conveyor.core.errors import InvalidDefinition

FULL = """\
filter:
  pattern: '^myapp-V(?P<version>\\d+\\.\\d+\\.\\d+)$'
  extract: "$version"
  exclude: ["*-debug"]
  exclude_pattern: "-rc\\\\d+$"
  exclude_signatures: false
policy:
  semver: {range: ">=1.0.0 <2.0.0"}
"""


def test_full_rule_to_core() -> None:
    """Every documented key reaches the core filter and policy unchanged."""
    rule = selection.parse_rule(FULL, file="rule.yaml")
    assert rule.filter.to_core() == versions.TagFilter(
        pattern=r"^myapp-V(?P<version>\d+\.\d+\.\d+)$",
        extract="$version",
        exclude=("*-debug",),
        exclude_pattern=r"-rc\d+$",
        exclude_signatures=False,
    )
    assert rule.policy.to_core() == versions.SemverPolicy(range=">=1.0.0 <2.0.0")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param("semver: {}", versions.SemverPolicy(), id="semver-any-stable"),
        pytest.param("alphabetical: {}", versions.AlphabeticalPolicy(), id="alphabetical-default"),
        pytest.param(
            "numerical: {order: desc}",
            versions.NumericalPolicy(order=versions.Order.DESC),
            id="numerical-desc",
        ),
        pytest.param("newest:", versions.NewestPolicy(), id="newest-null-means-defaults"),
        pytest.param(
            "newest: {max_candidates: 200}", versions.NewestPolicy(max_candidates=200), id="newest"
        ),
        pytest.param("digest: {tag: stable}", versions.DigestPolicy(tag="stable"), id="digest"),
    ],
)
def test_policies(policy: str, expected: versions.VersionPolicy) -> None:
    """Each policy kind parses into its core policy, with the documented defaults."""
    rule = selection.parse_rule(f"policy:\n  {policy}\n", file="rule.yaml")
    assert rule.policy.to_core() == expected
    assert rule.filter.to_core() == versions.TagFilter()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'policy:\n  semver: {range: ">=1.4,<"}\n',
            "rule.yaml:2:19: policy.semver.range: '>=1.4,<' is not a valid semver range "
            "('<' has no version after it); write e.g. '>=1.4.0 <2.0.0'",
            id="invalid-range",
        ),
        pytest.param(
            "filter:\n  pattern: '^(?=v)'\npolicy:\n  semver: {}\n",
            "rule.yaml:2:12: filter.pattern: '^(?=v)' is not a valid RE2 regular expression",
            id="lookaround",
        ),
        pytest.param(
            "filter:\n  glob: 'v*'\n  pattern: 'v'\npolicy:\n  semver: {}\n",
            "rule.yaml:2:3: filter: give either glob (whole tag) or pattern",
            id="glob-and-pattern",
        ),
        pytest.param(
            "filter:\n  pattern: '^v(.+)$'\n  extract: '$version'\npolicy:\n  semver: {}\n",
            "rule.yaml:3:12: filter.extract: '$version' refers to group 'version'",
            id="extract-unknown-group",
        ),
        pytest.param(
            "policy:\n  semver: {}\n  newest: {}\n",
            "rule.yaml:2:3: policy: give exactly one policy of semver, alphabetical, numerical, "
            "newest, digest (found: semver, newest)",
            id="two-policies",
        ),
        pytest.param(
            "policy:\n  alphabetical: {order: up}\n",
            "rule.yaml:2:25: policy.alphabetical.order: Input should be 'asc' or 'desc'",
            id="bad-order",
        ),
        pytest.param(
            "policy:\n  semver: {rnage: '^1'}\n",
            "rule.yaml:2:12: policy.semver.rnage: unknown key 'rnage'; valid keys here: range",
            id="typo-key",
        ),
        pytest.param(
            "filter: {glob: 'v*'}\n",
            "rule.yaml:1:1: policy: required",
            id="missing-policy",
        ),
        pytest.param(
            "policy: [semver\n",
            "rule.yaml:2:1: not valid YAML",
            id="broken-yaml",
        ),
        pytest.param(
            "policy:\n  newest: {max_candidates: 0}\n",
            "rule.yaml:2:28: policy.newest.max_candidates: "
            "Input should be greater than or equal to 1",
            id="cap-below-one",
        ),
    ],
)
def test_invalid_rules_are_located(text: str, expected: str) -> None:
    """An invalid rule names file, line, column and field, then the core's message."""
    with pytest.raises(InvalidDefinition) as caught:
        selection.parse_rule(text, file="rule.yaml")
    assert str(caught.value).startswith(expected)
