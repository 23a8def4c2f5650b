"""Where a run's image comes from: rules for pipeline sources.

A pipeline source takes the image of the upstream pipeline's last successful
run by default, or of a successful run the user picks. Anything else (a
failed, cancelled or unfinished run, a run of another pipeline, a run with
no image) is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from conveyor.core.errors import NotFound, PromotionRefused
from conveyor.core.images import PinnedImage
from conveyor.core.runs import RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRun:
    """What a downstream pipeline needs to know of an upstream run."""

    id: int
    pipeline: str
    status: RunStatus
    image: PinnedImage | None
    registry: str | None
    finished_at: datetime | None


def pick_upstream(
    runs: Sequence[UpstreamRun], *, pipeline: str, run_id: int | None = None
) -> UpstreamRun:
    """The upstream run whose image a pipeline-source run takes.

    ``runs`` are the upstream pipeline's runs (any order). Raises NotFound or
    PromotionRefused with a message saying what would be valid.
    """
    if run_id is not None:
        chosen = next((r for r in runs if r.id == run_id), None)
        if chosen is None:
            raise NotFound("run", str(run_id), hint=f"it is not a run of pipeline '{pipeline}'")
        if chosen.status != RunStatus.SUCCEEDED:
            raise PromotionRefused(
                [
                    f"run {run_id} of '{pipeline}' is {chosen.status}, not succeeded; "
                    "only a successful run's image may be promoted"
                ]
            )
        return _with_image(chosen)
    succeeded = [r for r in runs if r.status == RunStatus.SUCCEEDED and r.image is not None]
    if not succeeded:
        raise PromotionRefused([f"pipeline '{pipeline}' has no successful run yet; run it first"])
    return max(succeeded, key=lambda r: (r.finished_at.timestamp() if r.finished_at else 0.0, r.id))


def _with_image(run: UpstreamRun) -> UpstreamRun:
    if run.image is None:
        raise PromotionRefused([f"run {run.id} of '{run.pipeline}' has no image to promote"])
    return run
