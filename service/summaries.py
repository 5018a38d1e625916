"""Build the typed release reports, timelines and overviews from the registry's rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import releases
from core.models import (
    Deployment,
    FlipReportKind,
    FlipReportRecord,
    GateDecision,
    Release,
    UpgradeJob,
)
from mpt.gate import RULES
from service.report_schemas import (
    CandidateRow,
    DeploymentOverview,
    DeploymentTimeline,
    FlipReportOut,
    GateOut,
    GateRuleOut,
    GoldenEntry,
    JobSummary,
    LineageEntry,
    ProportionOut,
    ReleaseReport,
    ReleaseSummary,
    ReportEntry,
    SelectionOut,
)

__all__ = [
    "deployment_overview",
    "deployment_timeline",
    "job_summary",
    "per_class_csv",
    "release_report",
]

TIMELINE_JOBS = 20


@dataclass
class _Figures:
    """What the timeline needs of one stored report, read out by the database."""

    release_id: int
    kind: str
    baseline_id: int
    nfr: dict[str, Any]  # {"old": proportion, "all": proportion}
    errors: dict[str, Any]  # the new model's error rates


def _headline_figures(session: Session, release_ids: list[int]) -> list[_Figures]:
    """NFR and the new model's error rates of every report of these releases, read out of
    the stored JSON by the database rather than by parsing every whole report here."""
    report = FlipReportRecord.report
    rows = session.execute(
        sa.select(
            FlipReportRecord.release_id,
            FlipReportRecord.kind,
            FlipReportRecord.baseline_release_id,
            report["nfr"],
            report["error_rates"]["new_model"],
        ).where(FlipReportRecord.release_id.in_(release_ids))
    ).all()
    return [_Figures(*row) for row in rows]


def gate_out(decision: GateDecision) -> GateOut:
    rules = [
        GateRuleOut(
            rule=row["rule"],
            description=RULES[row["rule"]].description if row["rule"] in RULES else row["rule"],
            direction=RULES[row["rule"]].direction if row["rule"] in RULES else "at_most",
            value=row["value"],
            limit=row["limit"],
            passed=row["passed"],
        )
        for row in decision.rules
    ]
    return GateOut(
        passed=decision.passed,
        bind_on=str(decision.policy.get("bind_on", "point")),
        rules=rules,
        policy=decision.policy,
        forced=decision.forced,
        reason=decision.reason,
        decided_at=decision.decided_at,
    )


def _job_gate(session: Session, release: Release) -> GateDecision | None:
    """The gate's own verdict (the job's), not an admin's later override."""
    return session.scalars(
        sa.select(GateDecision)
        .where(GateDecision.release_id == release.id, GateDecision.forced.is_(False))
        .order_by(GateDecision.decided_at.desc(), GateDecision.id.desc())
    ).first()


def _gate(session: Session, release: Release) -> GateOut | None:
    judged, latest = _job_gate(session, release), releases.latest_gate(session, release)
    if judged is None or latest is None:
        return None if latest is None else gate_out(latest)
    out = gate_out(judged)
    if latest.forced:
        out.forced, out.reason = True, latest.reason
    return out


def release_report(session: Session, release: Release) -> ReleaseReport | None:
    """The release's flip reports, gate and candidates; None when no upgrade measured it."""
    rows = session.scalars(
        sa.select(FlipReportRecord).where(FlipReportRecord.release_id == release.id)
    ).all()
    main = [r for r in rows if r.kind in (FlipReportKind.CANDIDATE, FlipReportKind.NO_TREATMENT)]
    if not main:
        return None
    baseline = session.get(Release, main[0].baseline_release_id)
    job = session.get(UpgradeJob, release.upgrade_job_id) if release.upgrade_job_id else None
    selection = (job.gate or {}).get("selection") if job else None
    return ReleaseReport(
        deployment=release.deployment.name,
        version=release.version,
        baseline_version=baseline.version if baseline else None,
        method=job.request.get("method") if job else None,
        job_id=job.id if job else None,
        dataset_id=job.dataset_id if job else None,
        reports={
            row.kind: ReportEntry.model_validate({"split": row.split, "report": row.report})
            for row in main
        },
        lineage=_lineage(session, rows),
        golden=_golden(rows, job),
        gate=_gate(session, release),
        candidates=[CandidateRow.model_validate(c) for c in (job.candidates if job else [])],
        selection=None if selection is None else SelectionOut.model_validate(selection),
    )


def _lineage(session: Session, rows: Sequence[FlipReportRecord]) -> list[LineageEntry]:
    entries = []
    for row in rows:
        if row.kind == FlipReportKind.CUMULATIVE:
            version = session.get_one(Release, row.baseline_release_id).version
            entries.append(LineageEntry.model_validate({"baseline_version": version,
                                                        "report": row.report}))  # fmt: skip
    return sorted(entries, key=lambda e: e.baseline_version)


def _golden(rows: Sequence[FlipReportRecord], job: UpgradeJob | None) -> GoldenEntry | None:
    row = next((r for r in rows if r.kind == FlipReportKind.GOLDEN), None)
    if row is None:
        return None
    dataset = (job.gate or {}).get("golden_dataset_id") if job else None
    return GoldenEntry.model_validate({"dataset_id": dataset, "report": row.report})


def _proportion(data: dict[str, Any] | None) -> ProportionOut | None:
    return None if data is None else ProportionOut.model_validate(data)


def _summary(
    release: Release,
    versions: dict[int, int],
    figures: list[_Figures],
    gates: dict[int, list[GateDecision]],
) -> ReleaseSummary:
    mine = {f.kind: f for f in figures if f.kind != FlipReportKind.CUMULATIVE}
    chosen = mine.get(FlipReportKind.CANDIDATE)
    plain = mine.get(FlipReportKind.NO_TREATMENT)
    golden = mine.get(FlipReportKind.GOLDEN)
    lineage = [f for f in figures if f.kind == FlipReportKind.CUMULATIVE]
    worst = max(lineage, key=lambda f: f.nfr["old"]["value"] or 0.0, default=None)
    errors = chosen.errors if chosen else {}
    decisions = gates.get(release.id, [])
    judged = [d for d in decisions if not d.forced]
    return ReleaseSummary(
        version=release.version,
        status=release.status,
        source=release.source,
        created_at=release.created_at,
        activated_at=release.activated_at,
        num_classes=release.num_classes,
        nfr=_proportion(chosen.nfr["old"]) if chosen else None,
        error_all=_proportion(errors.get("all")),
        error_old=_proportion(errors.get("old")),
        error_new=_proportion(errors.get("new")),
        plain_retrain_nfr=_proportion(plain.nfr["old"]) if plain else None,
        cumulative_nfr=_proportion(worst.nfr["old"]) if worst else None,
        cumulative_baseline=versions.get(worst.baseline_id) if worst else None,
        golden_flips=golden.nfr["all"]["count"] if golden else None,
        baseline=release.baseline,
        gate_passed=judged[-1].passed if judged else None,
        forced=any(d.forced for d in decisions),
    )


def _release_summaries(session: Session, deployment: Deployment) -> list[ReleaseSummary]:
    rows = session.scalars(
        sa.select(Release).where(Release.deployment_id == deployment.id).order_by(Release.version)
    ).all()
    ids = [r.id for r in rows]
    versions = {r.id: r.version for r in rows}
    by_release: dict[int, list[_Figures]] = {}
    for figure in _headline_figures(session, ids):
        by_release.setdefault(figure.release_id, []).append(figure)
    gates: dict[int, list[GateDecision]] = {}
    for decision in session.scalars(
        sa.select(GateDecision)
        .where(GateDecision.release_id.in_(ids))
        .order_by(GateDecision.decided_at, GateDecision.id)
    ):
        gates.setdefault(decision.release_id, []).append(decision)
    return [_summary(r, versions, by_release.get(r.id, []), gates) for r in rows]


def job_summary(job: UpgradeJob, release_version: int | None) -> JobSummary:
    gate = job.gate or {}
    return JobSummary(
        id=job.id,
        status=job.status,
        phase=job.phase,
        fraction=job.progress.get("fraction"),
        created_at=job.created_at,
        finished_at=job.finished_at,
        release_version=release_version,
        gate_passed=gate.get("passed"),
        promoted=gate.get("promoted"),
        error=job.error,
    )


def _jobs(session: Session, deployment: Deployment, limit: int) -> list[JobSummary]:
    rows = session.execute(
        sa.select(UpgradeJob, Release.version)
        .outerjoin(Release, Release.id == UpgradeJob.result_release_id)
        .where(UpgradeJob.deployment_id == deployment.id)
        .order_by(UpgradeJob.created_at.desc(), UpgradeJob.id.desc())
        .limit(limit)
    ).all()
    return [job_summary(job, version) for job, version in rows]


def deployment_timeline(session: Session, deployment: Deployment) -> DeploymentTimeline:
    active = deployment.active_release
    return DeploymentTimeline(
        deployment=deployment.name,
        active_version=active.version if active else None,
        num_labels=len(active.labels) if active else None,
        releases=_release_summaries(session, deployment),
        jobs=_jobs(session, deployment, TIMELINE_JOBS),
    )


def deployment_overview(session: Session) -> list[DeploymentOverview]:
    """Every deployment, by name, with its NFR trend and its latest job."""
    out = []
    for deployment in session.scalars(sa.select(Deployment).order_by(Deployment.name)):
        summaries = _release_summaries(session, deployment)
        jobs = _jobs(session, deployment, 1)
        active = deployment.active_release
        out.append(
            DeploymentOverview(
                name=deployment.name,
                active_version=active.version if active else None,
                num_labels=len(active.labels) if active else None,
                releases=len(summaries),
                last_job=jobs[0] if jobs else None,
                nfr_trend=[s.nfr.value if s.nfr else None for s in summaries],
            )
        )
    return out


CSV_COLUMNS = (
    "index",
    "class",
    "samples",
    "flips",
    "nfr",
    "nfr_lower",
    "nfr_upper",
    "accuracy_before",
    "accuracy_after",
)


def per_class_csv(report: FlipReportOut) -> str:
    """One row per old class: flips, NFR with its interval, accuracy before and after."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in report.per_class:
        rates = (c.nfr.value, c.nfr.lower, c.nfr.upper)
        accuracy = (c.accuracy_before.value, c.accuracy_after.value)
        writer.writerow((c.index, _cell(c.name), c.count, c.flips, *rates, *accuracy))
    return out.getvalue()


def _cell(text: str) -> str:
    """Keep spreadsheets from running a class name as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
