"""Shadow traffic in the registry: start and stop a candidate's shadow, sum the tallies the API
processes write, and settle an auto-promotion once the live evidence is in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import releases
from core.audit import record as audit
from core.models import (
    Deployment,
    FlipReportKind,
    FlipReportRecord,
    GateDecision,
    Release,
    ReleaseStatus,
    Shadow,
    ShadowTally,
    utc_now,
)
from core.releases import ConflictError
from mpt.gate import GateContext, GateResult, evaluate_gate, validate_policy
from mpt.metrics import ChurnTally, FlipReport

__all__ = [
    "SHADOW_RULES",
    "Evidence",
    "current",
    "evidence",
    "running",
    "settle",
    "split_policy",
    "start",
    "stop",
    "write_tally",
]

SHADOW_RULES = ("max_shadow_churn", "min_shadow_samples")
SAMPLES_KEPT = 50  # disagreeing inputs kept per shadow, across processes


@dataclass
class Evidence:
    """A shadow's tally summed over every API process that fed it."""

    tally: ChurnTally = field(default_factory=ChurnTally)
    dropped: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


def split_policy(policy: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the rules a job can judge now, the shadow rules that wait for live traffic); both
    keep `bind_on`."""
    clean = validate_policy(policy)
    shared = {k: v for k, v in clean.items() if k == "bind_on"}
    now = {k: v for k, v in clean.items() if k not in SHADOW_RULES}
    later = {k: v for k, v in clean.items() if k in SHADOW_RULES}
    return now, ({**shared, **later} if later else {})


def current(session: Session, deployment: Deployment) -> Shadow | None:
    """The deployment's running shadow, if any."""
    return session.scalars(
        sa.select(Shadow).where(Shadow.deployment_id == deployment.id, Shadow.stopped_at.is_(None))
    ).first()


def start(
    session: Session,
    release: Release,
    *,
    sample_rate: float,
    threshold: float,
    auto_promote: bool,
    actor: str,
    policy: dict[str, Any] | None = None,
) -> Shadow:
    """Shadow `release` on its deployment's live traffic (replacing a running shadow);
    with `auto_promote`, promote it once `policy`'s shadow rules hold (see `settle`)."""
    deployment = release.deployment
    active = deployment.active_release
    if active is None:
        raise ConflictError(f"deployment {deployment.name!r} serves nothing to shadow beside")
    if release.id == active.id:
        raise ConflictError(f"release {release.version} is the active release")
    if release.labels[: len(active.labels)] != active.labels:
        raise ConflictError(
            f"release {release.version}'s labels do not start with the active release "
            f"{active.version}'s labels: their answers cannot be compared"
        )
    running_now = current(session, deployment)
    if running_now is not None:
        stop(session, running_now, "replaced", actor)
    shadow = Shadow(
        deployment_id=deployment.id, release_id=release.id, sample_rate=sample_rate,
        threshold=threshold, auto_promote=auto_promote, policy=split_policy(policy or {})[1],
    )  # fmt: skip
    session.add(shadow)
    session.flush()
    audit(session, actor, "start_shadow", deployment=deployment, release=release,
          detail={"sample_rate": sample_rate, "threshold": threshold,
                  "auto_promote": auto_promote})  # fmt: skip
    return shadow


def stop(session: Session, shadow: Shadow, outcome: str, actor: str) -> Shadow:
    if shadow.stopped_at is None:
        shadow.stopped_at, shadow.outcome = utc_now(), outcome
        audit(session, actor, "stop_shadow", release=shadow.release,
              detail={"version": shadow.release.version, "outcome": outcome})  # fmt: skip
    return shadow


def running(session: Session) -> list[tuple[str, Shadow]]:
    """(deployment name, shadow) of every running shadow."""
    rows = session.execute(
        sa.select(Deployment.name, Shadow)
        .join(Deployment, Deployment.id == Shadow.deployment_id)
        .where(Shadow.stopped_at.is_(None))
    ).all()
    return [(name, shadow) for name, shadow in rows]


def evidence(session: Session, shadow: Shadow) -> Evidence:
    out = Evidence()
    rows = session.scalars(sa.select(ShadowTally).where(ShadowTally.shadow_id == shadow.id))
    for row in rows:
        out.tally += ChurnTally.from_dict(row.counts)
        out.dropped += row.dropped
        out.samples.extend(row.samples)
    out.samples = out.samples[:SAMPLES_KEPT]
    return out


def write_tally(
    session: Session,
    shadow_id: int,
    process: str,
    tally: ChurnTally,
    dropped: int,
    samples: list[dict[str, Any]],
) -> None:
    """Replace this process's row of the shadow's tally with its running totals."""
    row = session.scalars(
        sa.select(ShadowTally).where(
            ShadowTally.shadow_id == shadow_id, ShadowTally.process == process
        )
    ).first()
    if row is None:
        row = ShadowTally(shadow_id=shadow_id, process=process)
        session.add(row)
    row.counts, row.dropped, row.samples = tally.to_dict(), dropped, samples[:SAMPLES_KEPT]


def settle(session: Session, shadow: Shadow, actor: str) -> str | None:
    """For an auto-promoting shadow: once `min_shadow_samples` is met, judge its shadow rules;
    promote on a pass, reject on a fail, record the decision, stop the shadow. Returns the
    outcome, or None while the evidence is still coming in (or it is not auto-promoting)."""
    if not shadow.auto_promote or not shadow.policy:
        return None
    session.refresh(shadow, with_for_update=True)  # one API process settles it
    rules = shadow.policy
    if shadow.stopped_at is not None:
        return None
    tally = evidence(session, shadow).tally
    if tally.seen < float(rules.get("min_shadow_samples", 1)):
        return None
    result = evaluate_gate(rules, _report_of(session, shadow), GateContext(shadow=tally))
    release = shadow.release
    if _record(session, shadow, rules, result):
        releases.promote(session, release.deployment, release, actor=actor)
        outcome = "promoted"
    else:
        release.status = ReleaseStatus.REJECTED
        outcome = "refused"
    stop(session, shadow, outcome, actor)
    return outcome


def _report_of(session: Session, shadow: Shadow) -> FlipReport:
    """The candidate's test report: the subject of the gate (the shadow rules read only the
    live tally)."""
    row = session.scalars(
        sa.select(FlipReportRecord).where(
            FlipReportRecord.release_id == shadow.release_id,
            FlipReportRecord.kind == FlipReportKind.CANDIDATE,
        )
    ).first()
    if row is None:
        raise ConflictError(f"release {shadow.release.version} has no flip report to gate")
    return FlipReport.from_dict(row.report)


def _record(session: Session, shadow: Shadow, rules: dict[str, Any], result: GateResult) -> bool:
    """The job's decision completed with the shadow rules: one decision with every rule.
    Returns whether it passed."""
    before = releases.latest_gate(session, shadow.release)
    earlier = [r for r in (before.rules if before else []) if r["rule"] not in SHADOW_RULES]
    passed = result.passed and (before.passed if before else True)
    session.add(
        GateDecision(
            release_id=shadow.release_id,
            passed=passed,
            policy={**(before.policy if before else {}), **rules},
            rules=earlier + result.to_dict()["rules"],
        )
    )
    return passed
