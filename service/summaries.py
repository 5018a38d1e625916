"""Build the typed release reports, timelines and overviews from the registry's rows."""

from __future__ import annotations

import csv
import io
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
    JobSummary,
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


def _headline_figures(
    session: Session, release_ids: list[int]
) -> dict[tuple[int, str], dict[str, Any]]:
    """Per (release, kind): NFR on old classes and the new model's error rates, read out of
    the stored reports by the database, not by parsing every whole report here."""
    report = FlipReportRecord.report
    rows = session.execute(
        sa.select(
            FlipReportRecord.release_id,
            FlipReportRecord.kind,
            report["nfr"]["old"],
            report["error_rates"]["new_model"],
        ).where(FlipReportRecord.release_id.in_(release_ids))
    ).all()
    return {(rid, kind): {"nfr": nfr, "errors": errors} for rid, kind, nfr, errors in rows}


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
    if not rows:
        return None
    baseline = session.get(Release, rows[0].baseline_release_id)
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
            for row in rows
        },
        gate=_gate(session, release),
        candidates=[CandidateRow.model_validate(c) for c in (job.candidates if job else [])],
        selection=None if selection is None else SelectionOut.model_validate(selection),
    )


def _proportion(data: dict[str, Any] | None) -> ProportionOut | None:
    return None if data is None else ProportionOut.model_validate(data)


def _summary(
    release: Release,
    figures: dict[tuple[int, str], dict[str, Any]],
    gates: dict[int, list[GateDecision]],
) -> ReleaseSummary:
    mine = figures.get((release.id, FlipReportKind.CANDIDATE), {})
    plain = figures.get((release.id, FlipReportKind.NO_TREATMENT), {})
    errors = mine.get("errors") or {}
    decisions = gates.get(release.id, [])
    judged = [d for d in decisions if not d.forced]
    return ReleaseSummary(
        version=release.version,
        status=release.status,
        source=release.source,
        created_at=release.created_at,
        activated_at=release.activated_at,
        num_classes=release.num_classes,
        nfr=_proportion(mine.get("nfr")),
        error_all=_proportion(errors.get("all")),
        error_old=_proportion(errors.get("old")),
        error_new=_proportion(errors.get("new")),
        plain_retrain_nfr=_proportion(plain.get("nfr")),
        gate_passed=judged[-1].passed if judged else None,
        forced=any(d.forced for d in decisions),
    )


def _release_summaries(session: Session, deployment: Deployment) -> list[ReleaseSummary]:
    rows = session.scalars(
        sa.select(Release).where(Release.deployment_id == deployment.id).order_by(Release.version)
    ).all()
    ids = [r.id for r in rows]
    figures = _headline_figures(session, ids)
    gates: dict[int, list[GateDecision]] = {}
    for decision in session.scalars(
        sa.select(GateDecision)
        .where(GateDecision.release_id.in_(ids))
        .order_by(GateDecision.decided_at, GateDecision.id)
    ):
        gates.setdefault(decision.release_id, []).append(decision)
    return [_summary(r, figures, gates) for r in rows]


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
