"""Typed shapes of what the API says about releases: flip reports, gate decisions, candidates,
timelines. The dashboard renders these same models; it has no other source."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CandidateRow",
    "ClassFlipsOut",
    "DeploymentOverview",
    "DeploymentTimeline",
    "FlipCell",
    "FlipMatrixOut",
    "FlipReportOut",
    "FlippedOut",
    "GateOut",
    "GateRuleOut",
    "GoldenEntry",
    "JobSummary",
    "LineageEntry",
    "ProportionOut",
    "ReleaseReport",
    "ReleaseSummary",
    "ReportEntry",
    "SelectionOut",
    "ShadowRead",
    "ShadowStart",
]


class ProportionOut(BaseModel):
    """`count` of `n` samples; `value` is null when `n` is 0; a Wilson interval around it."""

    value: float | None
    count: int
    n: int
    lower: float
    upper: float


class SubsetRates(BaseModel):
    old: ProportionOut = Field(description="over samples of old classes")
    all: ProportionOut = Field(description="over every sample")


class RelativeNFR(BaseModel):
    old: float | None
    all: float | None


class ModelErrors(BaseModel):
    all: ProportionOut
    old: ProportionOut
    new: ProportionOut | None = Field(description="null for the old model: it has no new classes")


class ErrorRates(BaseModel):
    old_model: ModelErrors
    new_model: ModelErrors


class ClassFlipsOut(BaseModel):
    index: int
    name: str
    count: int
    flips: int
    nfr: ProportionOut
    accuracy_before: ProportionOut
    accuracy_after: ProportionOut


class FlipCell(BaseModel):
    true: int
    true_name: str
    predicted: int
    predicted_name: str
    count: int


class FlipMatrixOut(BaseModel):
    to_old: list[FlipCell] = Field(description="flips to another old class")
    to_new: list[FlipCell] = Field(description="flips taken by a new class")
    to_old_total: int
    to_new_total: int


class FlippedOut(BaseModel):
    index: int = Field(description="position of the image in the evaluated split")
    label: int
    old_score: float | None
    new_prediction: int
    new_score: float | None


class FlipReportOut(BaseModel):
    """A flip report of a new model against an old one on one split (see docs/metrics.md)."""

    num_samples: int
    num_old: int
    num_classes: int
    class_names: list[str]
    confidence: float
    nfr: SubsetRates
    relative_nfr: RelativeNFR
    error_rates: ErrorRates
    btc: SubsetRates
    bec: SubsetRates
    per_class: list[ClassFlipsOut]
    flip_matrix: FlipMatrixOut
    flipped: list[FlippedOut] = Field(
        default_factory=list, description="up to 500 flipped samples, most confident first"
    )


class ReportEntry(BaseModel):
    split: str
    report: FlipReportOut


class GateRuleOut(BaseModel):
    rule: str
    description: str
    direction: Literal["at_most", "at_least"]
    value: float | None = Field(description="null when the rule could not be measured")
    limit: float
    passed: bool


class GateOut(BaseModel):
    passed: bool
    bind_on: str = Field(description="`point`: the estimate; `upper`: its pessimistic bound")
    rules: list[GateRuleOut]
    policy: dict[str, float | str]
    forced: bool = Field(description="an admin promoted the release over a failed gate")
    reason: str | None
    decided_at: datetime


class CandidateRow(BaseModel):
    bias: float | None
    relative_bias: float | None
    val_nfr: float | None
    val_nfr_interval: list[float]
    val_error: float | None
    val_old_samples: int
    chosen: bool


class SelectionOut(BaseModel):
    chosen: int
    best_error: float
    error_budget: float
    max_error: float
    qualified: list[int]
    fallback: bool
    reason: str


class LineageEntry(BaseModel):
    baseline_version: int
    report: FlipReportOut = Field(
        description="this release against the baseline; `nfr.old` is the cumulative NFR on "
        "the classes the baseline knew"
    )


class GoldenEntry(BaseModel):
    dataset_id: str | None = Field(description="the golden set's dataset (its test split)")
    report: FlipReportOut = Field(description="`flipped` lists each golden image that flips")


class ReleaseReport(BaseModel):
    """A release measured against the release it was trained to replace."""

    deployment: str
    version: int
    baseline_version: int | None
    method: str | None
    job_id: str | None
    dataset_id: str | None = Field(description="the dataset whose test split was evaluated")
    reports: dict[str, ReportEntry] = Field(
        description="`candidate`: this release; `no_treatment`: the plain retrain of the job"
    )
    lineage: list[LineageEntry] = Field(description="against each baseline, oldest first")
    golden: GoldenEntry | None
    gate: GateOut | None
    candidates: list[CandidateRow]
    selection: SelectionOut | None


class ReleaseSummary(BaseModel):
    """One line of a deployment's timeline."""

    version: int
    status: str
    source: str
    created_at: datetime
    activated_at: datetime | None
    num_classes: int
    nfr: ProportionOut | None = Field(description="NFR on old classes; null without a report")
    error_all: ProportionOut | None
    error_old: ProportionOut | None
    error_new: ProportionOut | None
    plain_retrain_nfr: ProportionOut | None
    cumulative_nfr: ProportionOut | None = Field(
        description="the highest NFR against a baseline, on the classes that baseline knew"
    )
    cumulative_baseline: int | None = Field(description="the baseline of `cumulative_nfr`")
    golden_flips: int | None = Field(description="golden images this release flipped")
    baseline: bool
    gate_passed: bool | None
    forced: bool


class JobSummary(BaseModel):
    id: str
    status: str
    phase: str | None
    fraction: float | None
    created_at: datetime
    finished_at: datetime | None
    release_version: int | None
    gate_passed: bool | None
    promoted: bool | None
    error: str | None


class DeploymentTimeline(BaseModel):
    deployment: str
    active_version: int | None
    num_labels: int | None
    releases: list[ReleaseSummary] = Field(description="oldest first")
    jobs: list[JobSummary] = Field(description="newest first, at most 20")


class DeploymentOverview(BaseModel):
    name: str
    active_version: int | None
    num_labels: int | None
    releases: int
    last_job: JobSummary | None
    nfr_trend: list[float | None] = Field(description="NFR on old classes, release by release")


class ShadowStart(BaseModel):
    """Put a candidate in shadow on its deployment's live traffic."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: float = Field(0.1, gt=0, le=1, description="share of live inputs shadowed")
    threshold: float = Field(
        0.9, ge=0, le=1, description="the active release's top-1 probability above which an "
        "input counts as confident (the churn on those stands in for the NFR)"
    )  # fmt: skip
    auto_promote: bool = Field(
        False, description="promote once the gate's shadow rules hold (or refuse when they fail)"
    )


class ShadowClass(BaseModel):
    index: int
    label: str
    seen: int
    disagree: int


class ShadowSample(BaseModel):
    url: str = Field(description="the input as a PNG")
    active_label: str
    active_score: float
    candidate_label: str


class ShadowRead(BaseModel):
    """A candidate's shadow and the churn tallied so far by every API process."""

    deployment: str
    version: int = Field(description="the shadowed candidate")
    sample_rate: float
    threshold: float
    auto_promote: bool
    policy: dict[str, float | str]
    started_at: datetime
    stopped_at: datetime | None
    outcome: str | None = Field(description="why it stopped: stopped, replaced, promoted, refused")
    seen: int
    dropped: int = Field(description="sampled inputs dropped because the shadow queue was full")
    churn: ProportionOut = Field(description="top-1 disagreements over every shadowed input")
    confident_churn: ProportionOut = Field(
        description="disagreements where the active release was confident: the NFR's proxy"
    )
    per_class: list[ShadowClass] = Field(description="by the active release's answer")
    samples: list[ShadowSample]
