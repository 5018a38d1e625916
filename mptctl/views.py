"""Plain-text views of what the service returns: tables for a terminal, one-line verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mptctl.reports import FlipReport, Gate, Proportion, ReleaseReport
from mptctl.resources import Dataset, Deployment, Job, PredictResult, Release

__all__ = [
    "dataset_line",
    "deployments_table",
    "jobs_table",
    "predictions_lines",
    "release_line",
    "releases_table",
    "report_text",
    "table",
    "verdict",
]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, a rule under the header."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def rate(p: Proportion | None) -> str:
    """A proportion as a percentage with its 95% interval: `5.7% [4.9, 6.6]`."""
    if p is None or p["value"] is None:
        return "-"
    return f"{100 * p['value']:.1f}% [{100 * p['lower']:.1f}, {100 * p['upper']:.1f}]"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def deployments_table(deployments: Sequence[Deployment]) -> str:
    rows = [
        [
            d.name,
            f"v{d.active_release.version}" if d.active_release else "-",
            str(len(d.active_release.labels)) if d.active_release else "-",
            ", ".join(f"{k}={v}" for k, v in d.gate.items()) or "-",
        ]
        for d in deployments
    ]
    return table(["name", "active", "labels", "gate"], rows)


def releases_table(releases: Sequence[Release]) -> str:
    rows = [
        [f"v{r.version}", r.status, r.source, r.arch, str(len(r.labels)), r.created_at[:19]]
        for r in releases
    ]
    return table(["version", "status", "source", "arch", "labels", "created"], rows)


def release_line(deployment: str, release: Release) -> str:
    return f"{deployment} v{release.version}: {release.status} ({len(release.labels)} labels)"


def dataset_line(dataset: Dataset) -> str:
    sizes = ", ".join(f"{split} {count}" for split, count in dataset.split_sizes().items())
    return f"dataset {dataset.id}: {len(dataset.classes)} classes; {sizes} images"


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        [
            j.id,
            j.status,
            j.phase or "-",
            f"{100 * j.progress.fraction:.0f}%",
            f"v{j.release_version}" if j.release_version else "-",
            {None: "-", True: "passed", False: "failed"}[j.gate_passed],
            j.created_at[:19],
        ]
        for j in jobs
    ]
    return table(["job", "status", "phase", "done", "release", "gate", "created"], rows)


def _failed_rules(gate: dict[str, object]) -> str:
    rules = gate.get("rules")
    failed = [r for r in rules if not r.get("passed")] if isinstance(rules, list) else []
    return "; ".join(f"{r['rule']} {_number(r.get('value'))} (limit {r['limit']})" for r in failed)


def verdict(job: Job) -> str:
    """One line: how the job ended and, when it trained a release, the gate's decision."""
    if job.status == "failed":
        return f"job {job.id} failed: {job.error or 'no reason recorded'}"
    if job.status != "succeeded":
        return f"job {job.id} {job.status}"
    release = f"{job.deployment} v{job.release_version}"
    if job.gate is None or job.gate_passed is None:
        return f"job {job.id} succeeded: {release}"
    if job.gate_passed:
        after = "promoted, now active" if job.promoted else "a candidate; promote it to serve it"
        return f"job {job.id} succeeded: {release} passed the gate, {after}"
    return f"job {job.id} succeeded: {release} failed the gate ({_failed_rules(job.gate)})"


def predictions_lines(names: Sequence[str], result: PredictResult) -> str:
    lines = [f"release v{result.release}"]
    for name, p in zip(names, result.predictions, strict=True):
        others = ", ".join(f"{s.label} {s.score:.2f}" for s in p.top_k[1:3])
        lines.append(f"{name}: {p.label} ({p.score:.2f}){'; then ' + others if others else ''}")
    return "\n".join(lines)


# --- the flip report -----------------------------------------------------------------------


_HEADLINE: list[tuple[str, Callable[[FlipReport], str]]] = [
    ("NFR, old-class images", lambda r: rate(r["nfr"]["old"])),
    ("NFR, all images", lambda r: rate(r["nfr"]["all"])),
    ("relative NFR, old", lambda r: _number(r["relative_nfr"].get("old"))),
    ("error, all", lambda r: rate(r["error_rates"]["new_model"]["all"])),
    ("error, old classes", lambda r: rate(r["error_rates"]["new_model"]["old"])),
    ("error, new classes", lambda r: rate(r["error_rates"]["new_model"]["new"])),
]


def _headline(candidate: FlipReport, plain: FlipReport | None) -> str:
    shown = [candidate] if plain is None else [candidate, plain]
    header = ["", "this release", *(["plain retrain"] if plain else [])]
    return table(header, [[title, *map(pick, shown)] for title, pick in _HEADLINE])


def _gate_text(gate: Gate | None) -> str:
    if gate is None:
        return "gate: not decided"
    word = "PASSED" if gate["passed"] else "FAILED"
    lines = [f"gate: {word} (rules bind on the {gate['bind_on']} estimate)"]
    if gate["forced"]:
        lines.append(f"forced promotion by an admin: {gate['reason'] or 'no reason given'}")
    rows = [
        [
            r["rule"],
            f"{'at most' if r['direction'] == 'at_most' else 'at least'} {r['limit']:.4g}",
            _number(r["value"]),
            "pass" if r["passed"] else "FAIL",
        ]
        for r in gate["rules"]
    ]
    if rows:
        lines.append(table(["rule", "limit", "value", ""], rows))
    return "\n".join(lines)


def _worst_classes(report: FlipReport, count: int) -> str:
    worst = sorted(report["per_class"], key=lambda c: (-c["flips"], c["index"]))[:count]
    rows = [
        [
            c["name"],
            f"{c['flips']}/{c['count']}",
            rate(c["nfr"]),
            f"{100 * (c['accuracy_before']['value'] or 0):.0f}%",
            f"{100 * (c['accuracy_after']['value'] or 0):.0f}%",
        ]
        for c in worst
        if c["flips"]
    ]
    if not rows:
        return "no old class lost an image"
    return table(["old class", "flips", "NFR", "acc. before", "after"], rows)


def report_text(report: ReleaseReport, worst: int = 5) -> str:
    """The flip report for a terminal: headline rates beside the plain retrain's, the
    gate's rules, and the old classes that lost the most images."""
    entry = report["reports"]["candidate"]
    plain = report["reports"].get("no_treatment")
    candidate = entry["report"]
    baseline = report["baseline_version"]
    against = f"v{baseline}" if baseline else "no release"
    new_classes = candidate["num_classes"] - candidate["num_old"]
    title = (
        f"{report['deployment']} v{report['version']} ({report['method'] or 'uploaded'}) "
        f"against {against}, {entry['split']} split of dataset {report['dataset_id']}: "
        f"{candidate['num_samples']} images, {candidate['num_old']} old and {new_classes} "
        "new classes"
    )
    parts = [
        title,
        _headline(candidate, plain["report"] if plain else None),
        _gate_text(report["gate"]),
        f"worst old classes\n{_worst_classes(candidate, worst)}",
    ]
    return "\n\n".join(parts)
