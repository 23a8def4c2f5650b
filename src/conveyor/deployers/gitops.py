"""GitOps deployer: commit the new digest to a git repository that Argo CD or Flux applies.

Edits one of: a kustomization's `images:` entry (newName + digest), a Helm
values file at a key path (repository + digest), or any YAML file at a path
expression (the full `registry/repository@sha256:...` reference). Files are
edited with ruamel.yaml's round-trip mode, so comments, order and quoting
stay as they were. Nothing to change means no commit. A push rejected
because someone else pushed first is retried on top of their commit
(fetch, reset, re-apply), a bounded number of times.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from conveyor.config.steps import GitOpsDeployer
from conveyor.core.credentials import Secret
from conveyor.core.errors import StepFailed
from conveyor.core.images import PinnedImage

# A rejected push is retried on top of the other writer's commit at most this often.
MAX_PUSH_ATTEMPTS = 3
COMMITTER = ("Conveyor", "conveyor@localhost")
_INDEX = re.compile(r"^(?P<key>[^\[\]]+)?((?:\[\d+\])*)$")

RunGit = Callable[[Sequence[str], Path], Awaitable[tuple[int, str]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What the deployer writes: the image by digest, through the chosen address."""

    image: PinnedImage
    reference: str  # <address>/<repository>@sha256:<digest>

    @property
    def name(self) -> str:
        """<address>/<repository>, without the digest."""
        return self.reference.rsplit("@", 1)[0]


_KEY_LINE = re.compile(r"^(?P<indent> *)[^\s#-][^#]*:\s*(#.*)?$")
_ITEM_LINE = re.compile(r"^(?P<indent> *)- ")


def _yaml(text: str) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    # Keep the file's list style: "key:\n  - item" (indented) or "key:\n- item" (flush).
    offset = _sequence_offset(text)
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def _sequence_offset(text: str) -> int:
    """How far a file indents list dashes under their key (2 or 0), from its first list."""
    previous_key: int | None = None
    for line in text.splitlines():
        item = _ITEM_LINE.match(line)
        if item and previous_key is not None:
            return max(0, len(item["indent"]) - previous_key)
        key = _KEY_LINE.match(line)
        previous_key = (
            len(key["indent"])
            if key and line.rstrip().split("#")[0].rstrip().endswith(":")
            else None
        )
    return 2


def edit_text(text: str, settings: GitOpsDeployer, change: Change) -> str:
    """The file's new text (unchanged text when nothing needs changing)."""
    yaml = _yaml(text)
    document = yaml.load(text)
    if settings.kustomization:
        changed = _kustomization(document, settings, change)
    elif settings.helm_values:
        changed = _helm_values(document, settings.key or "", change)
    else:
        changed = _set_path(document, settings.key or "", change.reference)
    if not changed:
        return text
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _kustomization(document: Any, settings: GitOpsDeployer, change: Change) -> bool:  # noqa: ANN401
    if not isinstance(document, CommentedMap):
        raise StepFailed(f"{settings.kustomization} is not a kustomization (not a mapping)")
    images = document.setdefault("images", CommentedSeq())
    wanted = settings.image_name or change.image.repository.name
    entry = next((e for e in images if isinstance(e, dict) and e.get("name") == wanted), None)
    if entry is None:
        names = ", ".join(str(e.get("name")) for e in images if isinstance(e, dict)) or "none"
        raise StepFailed(
            f"{settings.kustomization}: no images[] entry named '{wanted}' (entries: {names}); "
            "set with.image_name to the entry to change"
        )
    before = (entry.get("newName"), entry.get("digest"), entry.get("newTag"))
    entry["newName"] = change.name
    entry["digest"] = str(change.image.digest)
    if "newTag" in entry:
        del entry["newTag"]  # the digest decides; a tag beside it would only mislead readers
    return before != (entry.get("newName"), entry.get("digest"), entry.get("newTag"))


def _helm_values(document: Any, key: str, change: Change) -> bool:  # noqa: ANN401
    node = _walk(document, key, create=True)
    if not isinstance(node, CommentedMap):
        raise StepFailed(f"values key '{key}' is not a mapping with repository and digest")
    before = (node.get("repository"), node.get("digest"))
    node["repository"] = change.name
    node["digest"] = str(change.image.digest)
    return before != (node.get("repository"), node.get("digest"))


def _parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        match = _INDEX.match(piece)
        if not piece or match is None:
            raise StepFailed(f"'{path}' is not a key path; write e.g. spec.containers[0].image")
        if match["key"]:
            parts.append(match["key"])
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", piece))
    return parts


def _walk(document: Any, path: str, *, create: bool) -> Any:  # noqa: ANN401 - YAML nodes
    node = document
    for part in _parts(path):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise StepFailed(f"'{path}': no list item [{part}] there")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise StepFailed(f"'{path}': '{part}' is not inside a mapping")
            if part not in node:
                if not create:
                    raise StepFailed(f"'{path}': no key '{part}'")
                node[part] = CommentedMap()
            node = node[part]
    return node


def _set_path(document: Any, path: str, value: str) -> bool:  # noqa: ANN401
    parts = _parts(path)
    parent = (
        _walk(document, ".".join(_rejoin(parts[:-1])), create=False) if parts[:-1] else document
    )
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(parent, list) or last >= len(parent):
            raise StepFailed(f"'{path}': no list item [{last}] there")
        changed = parent[last] != value
        parent[last] = value
        return bool(changed)
    if not isinstance(parent, dict):
        raise StepFailed(f"'{path}': '{last}' is not inside a mapping")
    changed = parent.get(last) != value
    parent[last] = value
    return bool(changed)


def _rejoin(parts: Sequence[str | int]) -> list[str]:
    joined: list[str] = []
    for part in parts:
        if isinstance(part, int):
            joined[-1] += f"[{part}]"
        else:
            joined.append(part)
    return joined


def commit_message(*, pipeline: str, run_id: int, change: Change, approvers: Sequence[str]) -> str:
    """Names pipeline, run, digest, tag and approvers, so the git log is an audit trail."""
    image = change.image
    approved = ", ".join(approvers) if approvers else "nobody (no approval step)"
    return (
        f"Deploy {image.repository.name}@{image.digest} ({pipeline}, run {run_id})\n\n"
        f"Image: {change.reference}\n"
        f"Tag: {image.tag or '-'}\n"
        f"Pipeline: {pipeline}\n"
        f"Run: {run_id}\n"
        f"Approved by: {approved}\n"
    )


def git_environment(settings: GitOpsDeployer, token: Secret | None) -> dict[str, str]:
    """Committer identity, no prompts, and the token as an HTTP header (never on argv)."""
    env = {
        "GIT_AUTHOR_NAME": COMMITTER[0],
        "GIT_AUTHOR_EMAIL": COMMITTER[1],
        "GIT_COMMITTER_NAME": COMMITTER[0],
        "GIT_COMMITTER_EMAIL": COMMITTER[1],
        "GIT_TERMINAL_PROMPT": "0",
    }
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token.reveal()}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
        )
    return env


@dataclass(kw_only=True)
class GitOpsDeploy:
    """One deploy into a git repository, driven through `run_git`."""

    settings: GitOpsDeployer
    change: Change
    checkout: Path
    run_git: RunGit
    message: str
    branch_for_review: str
    log: Callable[[str], None]

    @property
    def target(self) -> str:
        return self.settings.kustomization or self.settings.helm_values or self.settings.file or ""

    async def git(self, *args: str, ok: bool = True) -> str:
        code, output = await self.run_git(args, self.checkout)
        if ok and code != 0:
            raise StepFailed(f"git {args[0]} failed in {self.settings.repository}: {output[-500:]}")
        return output

    async def clone(self) -> None:
        code, output = await self.run_git(
            [
                "clone",
                "--quiet",
                "--branch",
                self.settings.branch,
                self.settings.repository,
                str(self.checkout),
            ],
            self.checkout.parent,
        )
        if code != 0:
            raise StepFailed(
                f"git clone of {self.settings.repository} (branch {self.settings.branch}) "
                f"failed: {output[-500:]}"
            )

    def apply(self) -> bool:
        path = self.checkout / self.target
        if not path.is_file():
            raise StepFailed(f"{self.target} does not exist in {self.settings.repository}")
        text = path.read_text(encoding="utf-8")
        new = edit_text(text, self.settings, self.change)
        if new == text:
            return False
        path.write_text(new, encoding="utf-8")
        return True

    async def run(self, *, dry_run: bool) -> dict[str, str]:
        await self.clone()
        destination = (
            self.branch_for_review if self.settings.push_to_new_branch else (self.settings.branch)
        )
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            if not self.apply():
                self.log(f"{self.target} already points at {self.change.reference}; no commit")
                return {"commit": "", "changed": "false"}
            if dry_run:
                await self.git("diff")  # its lines go to the step log as they come
                return {"dry_run": "true", "changed": "true"}
            await self.git("commit", "--quiet", "--all", "--message", self.message)
            code, output = await self.run_git(
                ["push", "--quiet", "origin", f"HEAD:refs/heads/{destination}"], self.checkout
            )
            if code == 0:
                commit = (await self.git("rev-parse", "HEAD")).strip()
                self.log(
                    f"pushed {commit[:12]} to {destination}: {self.target} -> "
                    f"{self.change.reference}"
                )
                return {"commit": commit, "branch": destination, "changed": "true"}
            self.log(f"push rejected (attempt {attempt} of {MAX_PUSH_ATTEMPTS}): {output[-300:]}")
            await self.git("fetch", "--quiet", "origin", self.settings.branch)
            await self.git("reset", "--quiet", "--hard", f"origin/{self.settings.branch}")
        raise StepFailed(
            f"push to {self.settings.repository} ({destination}) was rejected "
            f"{MAX_PUSH_ATTEMPTS} times; others keep pushing, try again"
        )
