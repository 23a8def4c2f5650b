"""`build`: build an image, push it, and make the pushed digest the run's image.

The builder is a command template (buildah by default); whatever builds it,
the digest that counts is the one the registry holds for the pushed tag, read
back and compared with the builder's own digest file where it writes one.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from conveyor.config.steps import BuildStep
from conveyor.core.errors import StepFailed
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.runs import StepOutcome, Succeeded
from conveyor.engine.context import StepContext
from conveyor.engine.steps._process import run_process
from conveyor.engine.steps.command import render, timeout_of

# Builder command lines. $CONVEYOR_BUILD_* variables are set for each; a builder that can
# write the pushed digest to $CONVEYOR_DIGEST_FILE should.
BUILDERS: dict[str, list[str]] = {
    "buildah": [
        "buildah --storage-driver vfs bud --isolation chroot $CONVEYOR_BUILD_ARGS "
        '-f "$CONVEYOR_BUILD_CONTAINERFILE" -t "$CONVEYOR_BUILD_IMAGE" "$CONVEYOR_BUILD_CONTEXT"',
        "buildah --storage-driver vfs push $CONVEYOR_PUSH_FLAGS "
        '--digestfile "$CONVEYOR_DIGEST_FILE" "$CONVEYOR_BUILD_IMAGE" '
        '"docker://$CONVEYOR_BUILD_IMAGE"',
    ],
    "docker": [
        'docker build $CONVEYOR_BUILD_ARGS -f "$CONVEYOR_BUILD_CONTAINERFILE" '
        '-t "$CONVEYOR_BUILD_IMAGE" "$CONVEYOR_BUILD_CONTEXT"',
        'docker push "$CONVEYOR_BUILD_IMAGE"',
    ],
    "kaniko": [
        '/kaniko/executor --context "$CONVEYOR_BUILD_CONTEXT" '
        '--dockerfile "$CONVEYOR_BUILD_CONTAINERFILE" --destination "$CONVEYOR_BUILD_IMAGE" '
        '--digest-file "$CONVEYOR_DIGEST_FILE" $CONVEYOR_BUILD_ARGS',
    ],
}


class BuildRunner:
    kind: ClassVar[str] = "build"
    default_timeout: ClassVar[timedelta | None] = timedelta(hours=1)
    error_threshold: ClassVar[int] = 1

    async def run(self, step: StepContext) -> StepOutcome:
        config = step.config
        assert isinstance(config, BuildStep)
        registry = step.registries.definition(config.registry)
        tag = render(config.tag, step)
        repository = Repository(registry.host, config.repository)
        target = f"{repository}:{tag}"
        ImageRef.parse(target)  # a rendered tag must still be a valid tag
        context = await self._context(step, config)
        digest_file = step.workdir / "pushed.digest"
        digest_file.unlink(missing_ok=True)
        env = {
            **step.environ(),
            "CONVEYOR_BUILD_CONTEXT": str(context),
            "CONVEYOR_BUILD_CONTAINERFILE": str(context / config.containerfile),
            "CONVEYOR_BUILD_IMAGE": target,
            "CONVEYOR_BUILD_ARGS": " ".join(
                f"--build-arg {k}={render(v, step)}" for k, v in config.build_args.items()
            ),
            "CONVEYOR_DIGEST_FILE": str(digest_file),
            "CONVEYOR_PUSH_FLAGS": self._push_flags(step, config, registry.tls.insecure),
        }
        commands = (
            [config.command]
            if config.builder == "custom" and config.command
            else (BUILDERS[config.builder])
        )
        for command in commands:
            step.log(f"$ {command.split()[0]} ... ({config.builder})")
            code = await run_process(
                command,
                env=env,
                cwd=context,
                log=step.log,
                timeout=timeout_of(config, self.default_timeout),
                what=f"{config.builder} build",
                track=step.track_process,
            )
            if code != 0:
                raise StepFailed(f"{config.builder} exited with code {code} building {target}")
        pushed = await step.registries.client(config.registry).resolve(ImageRef.parse(target))
        if digest_file.exists():
            written = Digest.parse(digest_file.read_text().strip())
            if written != pushed.digest:
                raise StepFailed(
                    f"{target} now points at {pushed.digest}, not at the pushed {written}: "
                    "someone pushed the same tag meanwhile"
                )
        image = PinnedImage(repository=repository, digest=pushed.digest, tag=tag)
        step.log(f"pushed {image} (tag {tag})")
        return Succeeded(output={"image": str(image), "tag": tag}, image=image)

    async def _context(self, step: StepContext, config: BuildStep) -> Path:
        if config.context is not None:
            return (step.config_dir / config.context).resolve()
        assert config.git is not None
        checkout = step.workdir / "checkout"
        if checkout.exists():
            import shutil

            shutil.rmtree(checkout)
        code = await run_process(
            [
                "git",
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                config.git.branch,
                config.git.url,
                str(checkout),
            ],
            env=step.environ(),
            cwd=step.workdir,
            log=step.log,
            timeout=600,
            what="git clone",
            track=step.track_process,
        )
        if code != 0:
            raise StepFailed(f"git clone of {config.git.url} (branch {config.git.branch}) failed")
        return checkout

    def _push_flags(self, step: StepContext, config: BuildStep, insecure: bool) -> str:
        flags = ["--tls-verify=false"] if insecure else []
        credentials = step.registries.credentials(config.registry)
        if credentials is not None:
            # An auth file (mode 0600) keeps the password off the command line and out of logs.
            auth = base64.b64encode(
                f"{credentials.username}:{credentials.password.reveal()}".encode()
            ).decode()
            host = step.registries.definition(config.registry).host
            path = step.workdir / "auth.json"
            path.touch(mode=0o600)
            path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
            flags.append(f"--authfile {path}")
        return " ".join(flags)
