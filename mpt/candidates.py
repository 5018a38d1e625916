"""What an upgrade produced: its candidates with their validation reports, the selection,
and the test-split reports; JSON-ready summaries for the CLI and the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpt.data import ImageDataset
from mpt.gate import GateContext
from mpt.io import ModelPackage
from mpt.metrics import FlipReport
from mpt.selection import Selection, old_class_nfr
from mpt.train import TrainResult

__all__ = ["Candidate", "UpgradeResult", "validation_figures"]


def validation_figures(report: FlipReport) -> dict[str, Any]:
    """NFR on old classes with its interval and sample count, and overall error."""
    nfr = report.nfr.old
    return {
        "val_nfr": old_class_nfr(report),
        "val_nfr_interval": [nfr.lower, nfr.upper],
        "val_error": report.new_model_error.all.value,
        "val_old_samples": nfr.n,
    }


@dataclass
class Candidate:
    """One trained candidate and its flip report against the old model on validation."""

    bias: float | None  # in logits, as trained
    relative_bias: float | None  # in units of the old model's median margin, when so asked
    package: ModelPackage
    train: TrainResult
    val_report: FlipReport

    @property
    def val_nfr(self) -> float:
        """NFR on old-class validation samples (0 when there are none)."""
        return old_class_nfr(self.val_report)

    @property
    def val_error(self) -> float:
        return self.val_report.new_model_error.all.value

    def summary(self) -> dict[str, Any]:
        """Validation figures of the candidate, JSON-ready."""
        return {"bias": self.bias, "relative_bias": self.relative_bias,
                **validation_figures(self.val_report)}  # fmt: skip


@dataclass
class UpgradeResult:
    """Every model an upgrade trained, the chosen one, and the test-split flip reports."""

    dataset: ImageDataset  # aligned: old classes first, with a validation split
    reference: ModelPackage
    candidates: list[Candidate]
    selection: Selection
    report: FlipReport  # chosen candidate vs old model, test split
    reference_report: FlipReport  # phi_new vs old model: what no treatment would ship
    reference_val_report: FlipReport  # the same on the validation split
    margin: float | None = None  # old model's median margin, when biases are relative
    reference_train: TrainResult | None = None  # None when the reference was given
    ensemble: list[ModelPackage] = field(default_factory=list)  # ELODI's teachers, if any
    # The chosen candidate's gate evidence on test: the plain retrain's report, the golden
    # set's report and the reports against each baseline.
    evidence: GateContext = field(default_factory=GateContext)

    @property
    def golden_report(self) -> FlipReport | None:
        return self.evidence.golden

    @property
    def cumulative_reports(self) -> tuple[FlipReport, ...]:
        return self.evidence.cumulative

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.selection.index]

    def candidate_rows(self) -> list[dict[str, Any]]:
        """Each candidate's validation figures, the chosen one marked, JSON-ready."""
        rows = [{**c.summary(), "chosen": False} for c in self.candidates]
        rows[self.selection.index]["chosen"] = True
        return rows

    def summary(self) -> dict[str, Any]:
        """How the upgrade chose, and both test-split reports, JSON-ready."""
        return {
            "margin": self.margin,
            "selection": self.selection.to_dict(),
            "no_treatment_val": validation_figures(self.reference_val_report),
            "candidates": self.candidate_rows(),
            "candidate": self.report.to_dict(),
            "no_treatment": self.reference_report.to_dict(),
        }
