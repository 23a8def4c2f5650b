"""`conveyor select`: the chosen tag and exit codes 0, 1 and 2, through the real click command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli

RULE = """\
filter:
  pattern: '^myapp-V(?P<version>.+)$'
  extract: '$version'
  exclude: ['*-debug']
policy:
  semver: {range: '>=1.0.0 <2.0.0'}
"""
TAGS = (
    "myapp-V1.4.2\nmyapp-V1.5.0-rc1\nmyapp-V2.0.0\nmyapp-V1.4.3-debug\nlatest\nmyapp-V1.4.2.sig\n"
)


def run(tmp_path: Path, rule: str, tags: str, *args: str) -> tuple[int, str, str]:
    """Run the command with the rule and tags written to files."""
    (tmp_path / "rule.yaml").write_text(rule)
    (tmp_path / "tags.txt").write_text(tags)
    result = CliRunner().invoke(
        cli,
        [
            "select",
            "--rule",
            str(tmp_path / "rule.yaml"),
            "--tags",
            str(tmp_path / "tags.txt"),
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


def test_prints_the_chosen_tag(tmp_path: Path) -> None:
    """A qualifying tag is printed alone on stdout with exit 0."""
    assert run(tmp_path, RULE, TAGS) == (0, "myapp-V1.4.2\n", "")


def test_no_tag_qualifies(tmp_path: Path) -> None:
    """When nothing qualifies, the reason goes to stderr and the exit code is 1."""
    code, out, err = run(tmp_path, RULE, "latest\nmyapp-V3.0.0\n")
    assert (code, out) == (1, "")
    assert err == (
        "Error: no tag qualifies: 1 of 2 tags passed the filter, but none fits the policy "
        "(highest version in range '>=1.0.0 <2.0.0')\n"
    )


def test_empty_tag_list(tmp_path: Path) -> None:
    """An empty tags file is not an error of the rule: exit 1 with the reason."""
    assert run(tmp_path, RULE, "\n") == (1, "", "Error: no tag qualifies: the tag list is empty\n")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(
            "policy:\n  semver: {range: '>=1.4,<'}\n",
            "rule.yaml:2:19: policy.semver.range: '>=1.4,<' is not a valid semver range",
            id="invalid-range",
        ),
        pytest.param(
            "filter:\n  pattern: '(?<=v)1'\npolicy:\n  semver: {}\n",
            "rule.yaml:2:12: filter.pattern: '(?<=v)1' is not a valid RE2 regular expression",
            id="lookbehind",
        ),
        pytest.param(
            "policy: {}\n", "rule.yaml:1:9: policy: give exactly one policy", id="no-policy"
        ),
    ],
)
def test_invalid_rule_exits_2(tmp_path: Path, rule: str, message: str) -> None:
    """An invalid rule exits 2 and names file, line, column and field."""
    code, out, err = run(tmp_path, rule, TAGS)
    assert (code, out) == (2, "")
    assert err.startswith("Error: ") and message in err, err


def test_bad_creation_time_exits_2(tmp_path: Path) -> None:
    """A creation time that is not RFC 3339 names the line of the tags file."""
    code, _out, err = run(
        tmp_path, "policy:\n  newest: {}\n", "a\t2024-05-01T00:00:00Z\nb\tyesterday\n"
    )
    assert code == 2
    assert "tags.txt:2: created: 'yesterday' is not an RFC 3339 time" in err


def test_newest_uses_creation_times(tmp_path: Path) -> None:
    """The optional tab-separated creation time drives the newest policy."""
    tags = "a\t2024-05-01T00:00:00Z\nb\t2024-05-02T00:00:00+02:00\nc\n"
    assert run(tmp_path, "policy:\n  newest: {}\n", tags) == (0, "b\n", "")


def test_json_explain(tmp_path: Path) -> None:
    """--json --explain prints the documented object with a verdict for every tag."""
    code, out, _err = run(tmp_path, RULE, TAGS, "--json", "--explain")
    document = json.loads(out)
    assert code == 0
    assert document["selected"] == "myapp-V1.4.2"
    assert document["candidates"] == 1
    assert document["policy"] == "semver"
    assert [row["tag"] for row in document["tags"]] == TAGS.split()
    assert document["tags"][0] == {
        "tag": "myapp-V1.4.2",
        "kept": True,
        "key": "1.4.2",
        "rank": 1,
        "reason": "winner: " + document["reason"],
    }
    assert document["tags"][3]["reason"] == "excluded by exclude glob '*-debug'"


def test_json_without_explain_has_no_rows(tmp_path: Path) -> None:
    """--json alone prints the decision without per-tag rows, and null when nothing wins."""
    code, out, _err = run(tmp_path, RULE, "latest\n", "--json")
    assert code == 1
    assert json.loads(out) == {
        "selected": None,
        "reason": "no tag qualifies: the filter dropped all 1 tags",
        "candidates": 0,
        "policy": "semver",
    }


def test_explain_table(tmp_path: Path) -> None:
    """--explain prints every tag with its verdict and a final 'selected:' line."""
    code, out, _err = run(tmp_path, RULE, TAGS, "--explain")
    assert code == 0
    for text in ["myapp-V1.5.0-rc1", "names no prerelease", "does not match pattern", "dropped"]:
        assert text in out
    assert out.splitlines()[-1].startswith("selected: myapp-V1.4.2 (highest version in range")


def test_tags_from_stdin(tmp_path: Path) -> None:
    """'--tags -' reads the tag list from standard input, skipping blanks and comments."""
    (tmp_path / "rule.yaml").write_text("policy:\n  alphabetical: {order: desc}\n")
    result = CliRunner().invoke(
        cli,
        ["select", "--rule", str(tmp_path / "rule.yaml"), "--tags", "-"],
        input="# listed today\nb\n\na\nc\n",
    )
    assert (result.exit_code, result.stdout) == (0, "a\n")


def test_unreadable_tags_file_exits_2(tmp_path: Path) -> None:
    """A tags file that is not UTF-8 is reported as bad input, not a crash."""
    (tmp_path / "rule.yaml").write_text("policy:\n  semver: {}\n")
    (tmp_path / "tags.txt").write_bytes(b"\xff\xfe1.0.0\n")
    result = CliRunner().invoke(
        cli,
        ["select", "--rule", str(tmp_path / "rule.yaml"), "--tags", str(tmp_path / "tags.txt")],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot read the rule or the tags file: ")
