"""Running a subprocess with its output streamed, line by line, into the step log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.core.errors import StepFailed
from conveyor.engine.context import LogSink

# Lines longer than this are cut in the log: a runaway command must not fill the database.
MAX_LINE = 8192
# After a cancel kills the process group, how long to wait for it to be reaped.
REAP_TIMEOUT = 5.0


async def run_process(
    argv: Sequence[str] | str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: LogSink,
    timeout: float | None,
    what: str,
) -> int:
    """Run ``argv`` (a shell command when a string); returns its exit code.

    Raises StepFailed when it cannot start or runs past ``timeout`` (its whole
    process group is killed).
    """
    full_env = dict(env)
    try:
        if isinstance(argv, str):
            process = await asyncio.create_subprocess_shell(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        else:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=full_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
    except OSError as exc:
        raise StepFailed(f"{what} could not start: {exc.strerror or exc}") from exc
    assert process.stdout is not None and process.stderr is not None
    pumps = asyncio.gather(
        _pump(process.stdout, log, "stdout"), _pump(process.stderr, log, "stderr")
    )
    try:
        await asyncio.wait_for(asyncio.shield(pumps), timeout)
        return await process.wait()
    except TimeoutError:
        _kill_group(process.pid)
        await process.wait()
        pumps.cancel()
        raise StepFailed(f"{what} timed out after {_seconds(timeout)}") from None
    except asyncio.CancelledError:
        _kill_group(process.pid)
        # Reap it before the cancel goes on (``wait`` also sees its pipes closed):
        # the loop may be closing (a server stopping), whose own cancel of every
        # task may already have stopped the pumps, and a child left unreaped would
        # leak. Not through ``pumps``, for that reason.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(process.wait(), REAP_TIMEOUT)
        raise


async def _pump(stream: asyncio.StreamReader, log: LogSink, name: str) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # longer than the reader's limit
            line = await stream.read(MAX_LINE)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        log(text[:MAX_LINE], stream=name)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _seconds(timeout: float | None) -> str:
    if timeout is None:
        return "?"
    if timeout >= 60 and timeout % 60 == 0:
        return f"{int(timeout // 60)}m"
    return f"{timeout:g}s"
