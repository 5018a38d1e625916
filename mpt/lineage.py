"""Flips beyond one step: a candidate judged against the old model, earlier releases of its
lineage (baselines), and a must-not-flip (golden) set, with every model's logits computed
once per split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mpt.data import ImageDataset, Split
from mpt.errors import DatasetError
from mpt.evaluate import predict_logits
from mpt.gate import GateContext
from mpt.io import ModelPackage
from mpt.metrics import FlipReport, flip_report

__all__ = ["Judge", "check_baselines", "golden_split"]


def check_baselines(baselines: Sequence[ModelPackage], labels: Sequence[str]) -> None:
    """Each baseline must be an ancestor: its labels the first labels of the upgrade."""
    for baseline in baselines:
        known = list(baseline.manifest.labels)
        if list(labels[: len(known)]) != known:
            raise DatasetError(
                f"a baseline's {len(known)} labels are not the first labels of the upgrade; "
                "only an earlier release of the same lineage can be a baseline"
            )


def golden_split(golden: ImageDataset, labels: Sequence[str]) -> Split:
    """The golden set's test split, its labels mapped by name onto `labels`."""
    if "test" not in golden.splits:
        raise DatasetError(f"the golden set {golden.name!r} has no test split")
    position = {name: i for i, name in enumerate(labels)}
    unknown = [name for name in golden.classes if name not in position]
    if unknown:
        raise DatasetError(f"the golden set has classes the model does not know: {unknown}")
    split = golden.splits["test"]
    mapping = torch.tensor([position[name] for name in golden.classes], dtype=torch.long)
    return Split(split.x, mapping[split.y])


class Judge:
    """Flip reports of packages against the old model on the splits of `dataset`, and, when
    given, against `baselines` and on the `golden` split."""

    def __init__(
        self,
        old: ModelPackage,
        dataset: ImageDataset,
        baselines: Sequence[ModelPackage] = (),
        golden: Split | None = None,
    ) -> None:
        check_baselines(baselines, dataset.classes)
        if golden is not None and tuple(golden.x.shape[1:]) != tuple(dataset.image_shape):
            raise DatasetError(
                f"golden images are {tuple(golden.x.shape[1:])} (C, H, W); the upgrade's are "
                f"{tuple(dataset.image_shape)}"
            )
        self.old, self.dataset, self.baselines, self.golden = old, dataset, baselines, golden
        self._fixed: dict[tuple[int, str], Tensor] = {}  # (model, split) -> logits

    def _data(self, split: str) -> Split:
        if split == "golden":
            assert self.golden is not None
            return self.golden
        return self.dataset.splits[split]

    def _logits_of(self, index: int, split: str) -> Tensor:
        """The old model's (index -1) or a baseline's logits on `split`, computed once."""
        if (index, split) not in self._fixed:
            package = self.old if index < 0 else self.baselines[index]
            data = self._data(split)
            self._fixed[index, split] = predict_logits(
                package.model, data.x, package.manifest.input
            )
        return self._fixed[index, split]

    def _against(self, index: int, new: Tensor, split: str) -> FlipReport:
        package = self.old if index < 0 else self.baselines[index]
        return flip_report(
            self._logits_of(index, split), new, self._data(split).y,
            len(package.manifest.labels), self.dataset.classes,
        )  # fmt: skip

    def _new(self, package: ModelPackage, split: str) -> Tensor:
        return predict_logits(package.model, self._data(split).x, package.manifest.input)

    def report(self, package: ModelPackage, split: str) -> FlipReport:
        """`package` against the old model on `split`."""
        return self._against(-1, self._new(package, split), split)

    def assess(
        self, package: ModelPackage, split: str, reference: FlipReport | None
    ) -> tuple[FlipReport, GateContext]:
        """Its report against the old model on `split`, and what the gate compares it with:
        the plain retrain's `reference`, its reports against every baseline on `split`, and
        its report on the golden set."""
        new = self._new(package, split)
        cumulative = tuple(self._against(i, new, split) for i in range(len(self.baselines)))
        golden = None
        if self.golden is not None:
            golden = self._against(-1, self._new(package, "golden"), "golden")
        context = GateContext(reference=reference, golden=golden, cumulative=cumulative)
        return self._against(-1, new, split), context
