"""Follow an upgrade job with a live progress bar: its phase, training run and epoch."""

from __future__ import annotations

from tqdm import tqdm

from mptctl.client import Client
from mptctl.resources import Job

__all__ = ["describe", "watch_job"]


def describe(job: Job) -> str:
    """What the job is doing, e.g. `candidates · candidate-2 · epoch 3/8`."""
    if job.finished:
        return job.status
    progress = job.progress
    parts = [job.phase or job.status]
    if progress.stage and job.phase in ("reference", "candidates"):
        parts.append(progress.stage)
        if progress.epoch is not None and progress.epochs:
            parts.append(f"epoch {progress.epoch}/{progress.epochs}")
    return " · ".join(parts)


def watch_job(client: Client, job_id: str, *, quiet: bool = False, interval: float = 0.5) -> Job:
    """Poll the job until it ends, drawing its progress on stderr unless `quiet`; returns
    the finished job."""
    bars: list[tqdm[None]] = []  # drawn from the first answer on: an error stays one line

    def show(job: Job) -> None:
        text, percent = f"job {job.id[:8]}: {describe(job)}", round(100 * job.progress.fraction, 1)
        if not bars:
            bar_format = "{desc} {bar} {percentage:3.0f}%"
            bars.append(
                tqdm(total=100, initial=percent, desc=text, disable=quiet, bar_format=bar_format)
            )
        bar = bars[0]
        bar.set_description_str(text, refresh=False)
        bar.n = percent
        bar.refresh()

    try:
        return client.wait(job_id, on_update=show, interval=interval)
    finally:
        for bar in bars:
            bar.close()
