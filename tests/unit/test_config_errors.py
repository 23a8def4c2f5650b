"""Broken configurations: each is refused with file:line:column, the field path and the fix."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli

GOOD_HEAD = """\
registries:
  main:
    url: https://registry.example.com
environments:
  - name: test
  - name: pre-release
  - name: production
    requires: pre-release
sources:
  myapp:
    registry: main
    repository: team/myapp
"""


def _validate(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    lines = [
        line
        for line in result.output.splitlines()
        if line and not re.fullmatch(r"\d+ problems? found", line)
    ]
    return result.exit_code, lines


CASES = [
    pytest.param(
        "registries:\n  main: {url: https://x\n",
        "conveyor.yaml:3:1: YAML syntax error: expected ',' or '}'",
        id="yaml-syntax-error",
    ),
    pytest.param(
        "registries:\n  main:\n\turl: https://x\n",
        "conveyor.yaml:3:1: YAML syntax error: a tab character is not allowed here; "
        "YAML indentation must use spaces",
        id="tab-indentation",
    ),
    pytest.param(
        GOOD_HEAD + "    policy: {semver: {}}\n    filtr: {glob: 'myapp-V*'}\n",
        "conveyor.yaml:14:5: sources.myapp.filtr: unknown key 'filtr' (did you mean 'filter'?)",
        id="unknown-key",
    ),
    pytest.param(
        "registires:\n  main: {url: https://x}\n",
        "conveyor.yaml:1:1: registires: unknown section 'registires' (did you mean 'registries'?)",
        id="unknown-section",
    ),
    pytest.param(
        GOOD_HEAD.replace("  - name: test\n", "  - name: test\n    requires: 5\n"),
        "conveyor.yaml:6:15: environments[0].requires: expected an environment name or a list "
        "of names, found a number (5)",
        id="wrong-type",
    ),
    pytest.param(
        GOOD_HEAD.replace("    repository: team/myapp\n", ""),
        "conveyor.yaml:10:3: sources.myapp: required field 'repository' is missing",
        id="missing-required-field",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    steps:\n      - type: deplyo\n",
        "conveyor.yaml:16:15: pipelines.p.steps[0].type: unknown step type 'deplyo' "
        "(did you mean 'deploy'?); valid: approval, build, command, deploy, scan, verify",
        id="misspelt-step-type",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    steps:\n      - {type: deploy, deployer: kubernets}\n",
        "conveyor.yaml:16:34: pipelines.p.steps[0].deployer: unknown deployer 'kubernets' "
        "(did you mean 'kubernetes'?)",
        id="misspelt-deployer",
    ),
    pytest.param(
        GOOD_HEAD + "    filter: {pattern: '^myapp-(?=V)'}\n",
        "conveyor.yaml:13:23: sources.myapp.filter.pattern: '^myapp-(?=V)' is not a valid "
        "RE2 regular expression (invalid perl operator: (?=); lookarounds",
        id="bad-regex-lookahead",
    ),
    pytest.param(
        GOOD_HEAD
        + "pipelines:\n  p:\n    triggers:\n      - registry_event: {source: myapp, tag: '[a-'}\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:16:46: pipelines.p.triggers[0].registry_event.tag: '[a-' is not a valid "
        "regular expression",
        id="bad-regex-trigger",
    ),
    pytest.param(
        GOOD_HEAD + "    policy: {semver: {range: '>=1.4,<'}}\n",
        "conveyor.yaml:13:30: sources.myapp.policy.semver.range: '>=1.4,<' is not a valid semver range",
        id="bad-semver-range",
    ),
    pytest.param(
        GOOD_HEAD.replace("    registry: main\n", "    registry: mian\n"),
        "conveyor.yaml:11:15: sources.myapp.registry: unknown registry 'mian' "
        "(did you mean 'main'?); defined: main",
        id="unknown-registry",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    source: {artifact: myap}\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:15:24: pipelines.p.source.artifact: unknown source 'myap' "
        "(did you mean 'myapp'?)",
        id="unknown-source",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    source: {pipeline: prerelease}\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:15:24: pipelines.p.source.pipeline: unknown pipeline 'prerelease'; "
        "defined: p",
        id="unknown-pipeline",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    environment: prod\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:15:18: pipelines.p.environment: unknown environment 'prod'",
        id="unknown-environment",
    ),
    pytest.param(
        GOOD_HEAD.replace("  - name: test\n", "  - name: test\n    requires: production\n"),
        "conveyor.yaml:6:15: environments[0].requires: requires 'production', which comes "
        "later (order: test, pre-release, production); an environment can only require an "
        "earlier one",
        id="requires-later-environment",
    ),
    pytest.param(
        GOOD_HEAD.replace("requires: pre-release", "requires: staging"),
        "conveyor.yaml:8:15: environments[2].requires: unknown environment 'staging'",
        id="requires-missing-environment",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n"
        "  a:\n    source: {pipeline: b}\n    steps: [{type: command, run: 'true'}]\n"
        "  b:\n    source: {pipeline: a}\n    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:15:24: pipelines.a.source.pipeline: pipeline sources form a cycle: "
        "a -> b -> a",
        id="pipeline-source-cycle",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  a:\n    source: {pipeline: a}\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:15:24: pipelines.a.source.pipeline: a pipeline cannot take its image "
        "from itself",
        id="pipeline-source-self",
    ),
    pytest.param(
        GOOD_HEAD.replace("  - name: production\n", "  - name: test\n  - name: production\n"),
        "conveyor.yaml:7:11: environments[2].name: duplicate name 'test' in environments; "
        "first defined at conveyor.yaml:5",
        id="duplicate-environment",
    ),
    pytest.param(
        GOOD_HEAD + "  myapp:\n    registry: main\n    repository: x\n",
        "conveyor.yaml:13:3: duplicate key 'myapp' in the same mapping",
        id="duplicate-key",
    ),
    pytest.param(
        GOOD_HEAD.replace(
            "    url: https://registry.example.com\n",
            "    url: https://registry.example.com\n    credentials:\n"
            "      username_env: REG_USER\n      password: hunter2-secret\n",
        ),
        "conveyor.yaml:4:5: registries.main.credentials: 'password' is a secret and must not "
        "be written in the config; use 'password_env: VARIABLE_NAME'",
        id="inline-secret",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hook: {format: distribution, secret: s3cr3t-value}\n",
        "conveyor.yaml:14:3: webhooks.hook: 'secret' is a secret and must not be written",
        id="inline-webhook-secret",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hook: {format: distributon, secret_env: HOOK_SECRET}\n",
        "conveyor.yaml:14:18: webhooks.hook.format: the string 'distributon' is not one of",
        id="bad-webhook-format",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hook: {format: distribution}\n",
        "conveyor.yaml:14:3: webhooks.hook: required field 'secret_env' is missing (auth "
        "'bearer' checks a shared secret",
        id="webhook-without-secret",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hub:\n    format: harbor\n    auth: oidc\n    audience: x\n",
        "conveyor.yaml:16:11: webhooks.hub.auth: auth 'oidc' checks Google Pub/Sub push tokens "
        "(format 'gar'); 'harbor' does not send them",
        id="oidc-for-another-sender",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hook:\n    format: distribution\n    header: X-Token\n"
        "    secret_env: HOOK_SECRET\n",
        "conveyor.yaml:16:13: webhooks.hook.header: 'header' is only used with auth 'header' or "
        "'hmac-sha256', not 'bearer'",
        id="header-with-bearer",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n",
        "conveyor.yaml:14:3: webhooks.gar: auth 'oidc' needs 'audience' (the push "
        "subscription's audience",
        id="oidc-without-audience",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    secret_env: HOOK_SECRET\n",
        "conveyor.yaml:18:17: webhooks.gar.secret_env: auth 'oidc' uses no shared secret",
        id="oidc-with-secret",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    previous_secret_env: OLD_SECRET\n",
        "conveyor.yaml:18:26: webhooks.gar.previous_secret_env: auth 'oidc' uses no shared "
        "secret; remove 'previous_secret_env'",
        id="oidc-with-previous-secret",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  hook:\n    format: distribution\n    secret_env: HOOK_SECRET\n"
        "    previous_secret_env: HOOK_SECRET\n",
        "conveyor.yaml:17:26: webhooks.hook.previous_secret_env: names the same variable as "
        "'secret_env' (HOOK_SECRET)",
        id="previous-secret-same-as-current",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    secret_env: HOOK_SECRET\n"
        "    audience: https://c.example.com/hooks/gar\n",
        "conveyor.yaml:17:15: webhooks.gar.audience: 'audience' is only used with auth 'oidc', "
        "not 'bearer'",
        id="audience-without-oidc",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    jwks_url: http://keys.example.com/certs\n",
        "conveyor.yaml:18:15: webhooks.gar.jwks_url: 'http://keys.example.com/certs' is plain http",
        id="oidc-plain-http-keys",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    jwks_url: keys.example.com\n",
        "conveyor.yaml:18:15: webhooks.gar.jwks_url: 'keys.example.com' is not a URL",
        id="oidc-keys-not-a-url",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    jwks_file: keys.json\n    jwks_url: https://keys.example.com/certs\n",
        "conveyor.yaml:14:3: webhooks.gar: give 'jwks_file' or 'jwks_url', not both",
        id="oidc-two-key-sources",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: x\n"
        "    email: pusher\n",
        "conveyor.yaml:18:12: webhooks.gar.email: 'pusher' is not an email address",
        id="oidc-bad-email",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar:\n    format: gar\n    auth: oidc\n    audience: ''\n",
        "conveyor.yaml:17:15: webhooks.gar.audience: is empty",
        id="oidc-empty-audience",
    ),
    pytest.param(
        GOOD_HEAD + "webhooks:\n  gar: {format: gar, auth: odic, audience: x}\n",
        "conveyor.yaml:14:28: webhooks.gar.auth: the string 'odic' is not one of 'bearer', "
        "'header', 'hmac-sha256', 'basic' or 'oidc' (did you mean 'oidc'?)",
        id="misspelt-auth",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    steps:\n      - {type: approval, timeout: 5 minutes}\n",
        "conveyor.yaml:16:35: pipelines.p.steps[0].timeout: '5 minutes' is not a duration",
        id="bad-duration",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    steps:\n      - type: deploy\n"
        "        deployer: kubernetes\n        with: {namespace: x, nme: y}\n",
        "conveyor.yaml:18:30: pipelines.p.steps[0].with.nme: unknown key 'nme' "
        "(did you mean 'name'?)",
        id="deployer-unknown-key",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    steps: []\n",
        "conveyor.yaml:15:5: pipelines.p.steps: needs at least 1 item, found none",
        id="empty-steps",
    ),
    pytest.param(
        GOOD_HEAD.replace("  main:\n", "  Main_Registry:\n"),
        "conveyor.yaml:2:3: registries.Main_Registry: 'Main_Registry' is not a valid name",
        id="invalid-name",
    ),
    pytest.param(
        GOOD_HEAD.replace("https://registry.example.com", "http://127.0.0.1:5000"),
        "conveyor.yaml:2:3: registries.main: 'http://127.0.0.1:5000' is plain http; "
        "set tls.insecure: true to allow it",
        id="plain-http-without-insecure",
    ),
    pytest.param(
        GOOD_HEAD + "pipelines:\n  p:\n    triggers:\n      - schedule: {cron: every day}\n"
        "    steps: [{type: command, run: 'true'}]\n",
        "conveyor.yaml:16:26: pipelines.p.triggers[0].schedule.cron: 'every day' is not a cron "
        "expression",
        id="bad-cron",
    ),
    pytest.param(
        GOOD_HEAD
        + "pipelines:\n  p:\n    steps:\n      - {type: build, context: ., registry: main,"
        " repository: team/myapp, tag: 'myapp-V$R_VERSION'}\n",
        "conveyor.yaml:16:80: pipelines.p.steps[0].tag: 'myapp-V$R_VERSION': a '$' must start a "
        "placeholder like '${R_VERSION}'",
        id="bad-template",
    ),
    pytest.param(
        GOOD_HEAD.replace("example.com\n", "example.com\n    chunk_size: lots\n", 1),
        "conveyor.yaml:4:17: registries.main.chunk_size: 'lots' is not a size; write a number "
        "of bytes or a number with a unit (KiB, MiB, GiB, or KB, MB, GB), e.g. 16MiB; "
        "between 64KiB and 5GiB",
        id="chunk-size-not-a-size",
    ),
    pytest.param(
        GOOD_HEAD.replace("example.com\n", "example.com\n    chunk_size: 4KiB\n", 1),
        "conveyor.yaml:4:17: registries.main.chunk_size: 4KiB (4096 bytes) is out of range; "
        "the chunk size is between 64KiB and 5GiB",
        id="chunk-size-too-small",
    ),
    pytest.param(
        GOOD_HEAD.replace("example.com\n", "example.com\n    chunk_size: 6GiB\n", 1),
        "conveyor.yaml:4:17: registries.main.chunk_size: 6GiB (6442450944 bytes) is out of range",
        id="chunk-size-too-large",
    ),
    pytest.param(
        GOOD_HEAD.replace("example.com\n", "example.com\n    token_flow: oauth2\n", 1),
        "conveyor.yaml:2:3: registries.main: token_flow: oauth2 sends a username and password "
        "(or an identity token) to the token service; add 'credentials'",
        id="oauth2-without-credentials",
    ),
    pytest.param(
        GOOD_HEAD.replace("example.com\n", "example.com\n    token_flow: post\n", 1),
        "conveyor.yaml:4:17: registries.main.token_flow: the string 'post' is not one of",
        id="unknown-token-flow",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_broken_config_is_refused_with_location(tmp_path: Path, text: str, expected: str) -> None:
    """A broken config exits 1 and names file:line:column, the field path and the problem."""
    path = tmp_path / "conveyor.yaml"
    path.write_text(text)
    code, lines = _validate(path)
    assert code == 1
    shown = [line.replace(str(tmp_path) + "/", "") for line in lines]
    assert any(line.startswith(expected) for line in shown), "\n".join(shown)


def test_inline_secret_is_never_echoed(tmp_path: Path) -> None:
    """A password written into the config is refused without printing it."""
    path = tmp_path / "conveyor.yaml"
    path.write_text(
        "registries:\n  main:\n    url: https://r.example.com\n"
        "    credentials: {username_env: U, password: hunter2-secret}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert "hunter2-secret" not in result.output


def test_all_problems_are_reported_in_one_run(tmp_path: Path) -> None:
    """Validation reports every problem, sorted by line, not only the first."""
    path = tmp_path / "conveyor.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            registries:
              main: {url: https://x.example.com, tlss: {}}
            environments:
              - name: prod
                requires: qa
            pipelines:
              p:
                environment: nowhere
                steps: [{type: deplyo}]
            """
        )
    )
    code, lines = _validate(path)
    assert code == 1
    assert [line.split(": ")[0].rsplit("/", 1)[-1] for line in lines] == [
        "conveyor.yaml:2:38",
        "conveyor.yaml:5:15",
        "conveyor.yaml:9:20",
    ]


def test_duplicate_across_files_names_the_first_definition(tmp_path: Path) -> None:
    """The same pipeline name in two files of conveyor.d/ is refused, naming both places."""
    (tmp_path / "conveyor.d").mkdir()
    step = "    steps: [{type: command, run: 'true'}]\n"
    (tmp_path / "conveyor.d" / "a.yaml").write_text("pipelines:\n  p:\n" + step)
    (tmp_path / "conveyor.d" / "b.yaml").write_text("\npipelines:\n  p:\n" + step)
    code, lines = _validate(tmp_path)
    assert code == 1
    assert lines == [
        f"{tmp_path}/conveyor.d/b.yaml:3:3: pipelines.p: duplicate name 'p' in pipelines; "
        f"first defined at {tmp_path}/conveyor.d/a.yaml:2"
    ]


def test_missing_config_says_what_was_expected(tmp_path: Path) -> None:
    """A directory without any config names the files it looked for."""
    code, lines = _validate(tmp_path)
    assert code == 1
    assert "no configuration found; expected conveyor.yaml, conveyor.d/*.yaml" in lines[0]
