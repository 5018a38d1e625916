"""The flip report of a release as the service sends it (`GET .../releases/{v}/report`).

TypedDicts rather than classes: the report is large, nested and printed as-is by
`mptctl report --json`; these types name the parts a client reads.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "ClassFlips",
    "FlipReport",
    "Gate",
    "GateRule",
    "ModelErrors",
    "Proportion",
    "ReleaseReport",
    "ReportEntry",
    "SubsetRates",
]


class Proportion(TypedDict):
    """`count` of `n`; `value` is None when `n` is 0; a 95% Wilson interval around it."""

    value: float | None
    count: int
    n: int
    lower: float
    upper: float


class SubsetRates(TypedDict):
    old: Proportion
    all: Proportion


class ModelErrors(TypedDict):
    all: Proportion
    old: Proportion
    new: Proportion | None


class ErrorRates(TypedDict):
    old_model: ModelErrors
    new_model: ModelErrors


class ClassFlips(TypedDict):
    index: int
    name: str
    count: int
    flips: int
    nfr: Proportion
    accuracy_before: Proportion
    accuracy_after: Proportion


class FlipReport(TypedDict):
    num_samples: int
    num_old: int
    num_classes: int
    class_names: list[str]
    nfr: SubsetRates
    relative_nfr: dict[str, float | None]
    error_rates: ErrorRates
    per_class: list[ClassFlips]


class ReportEntry(TypedDict):
    split: str
    report: FlipReport


class GateRule(TypedDict):
    rule: str
    description: str
    direction: Literal["at_most", "at_least"]
    value: float | None
    limit: float
    passed: bool


class Gate(TypedDict):
    passed: bool
    bind_on: str
    rules: list[GateRule]
    forced: bool
    reason: str | None


class ReleaseReport(TypedDict):
    """A release against the release it was trained to replace: `reports["candidate"]` is
    the release itself, `reports["no_treatment"]` the job's plain retrain."""

    deployment: str
    version: int
    baseline_version: int | None
    method: str | None
    job_id: str | None
    dataset_id: str | None
    reports: dict[str, ReportEntry]
    gate: Gate | None
