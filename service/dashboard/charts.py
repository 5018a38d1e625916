"""Charts drawn on the server as SVG: no script, no network, readable without colour.

Every chart carries a text alternative (`role="img"` with a `<title>` and an `aria-label`),
values are written beside the marks, and series differ in marker shape and dash as well as
in colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from service.report_schemas import (
    CandidateRow,
    ClassFlipsOut,
    FlipMatrixOut,
    ProportionOut,
    ReleaseSummary,
)

__all__ = ["candidates_chart", "class_bars", "flip_heatmap", "release_chart", "sparkline"]

INK, MUTED, GRID = "#1f2933", "#616e7c", "#d9e2ec"
NFR_COLOUR, ERROR_COLOUR, NEW_COLOUR = "#b42318", "#1d4ed8", "#7a5af8"


def _svg(width: float, height: float, label: str, body: str, css_class: str = "chart") -> Markup:
    text = escape(label)
    return Markup(
        f'<svg class="{css_class}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" '
        f'aria-label="{text}" xmlns="http://www.w3.org/2000/svg"><title>{text}</title>'
        f"{body}</svg>"
    )


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> Markup:
    """NFR release by release; releases without a report leave a gap."""
    known = [v for v in values if v is not None]
    label = "NFR by release: " + (", ".join(_pct(v) for v in values) or "no releases")
    if not known:
        return _svg(width, height, label, "", "sparkline")
    top = max(max(known), 1e-9)
    step = (width - 6) / max(len(values) - 1, 1)
    points = [
        (3 + i * step, height - 3 - (height - 6) * v / top)
        for i, v in enumerate(values)
        if v is not None
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    body = (
        f'<polyline points="{path}" fill="none" stroke="{NFR_COLOUR}" stroke-width="1.5"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" fill="{NFR_COLOUR}"/>'
    )
    return _svg(width, height, label, body, "sparkline")


@dataclass(frozen=True)
class _Frame:
    """A plot area inside margins, mapping data to pixels."""

    width: float
    height: float
    left: float = 56
    right: float = 16
    top: float = 16
    bottom: float = 40

    def x(self, fraction: float) -> float:
        return self.left + fraction * (self.width - self.left - self.right)

    def y(self, fraction: float) -> float:
        return self.height - self.bottom - fraction * (self.height - self.top - self.bottom)


def _y_axis(frame: _Frame, top: float, label: str) -> str:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = frame.y(i / 4)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{GRID}"/><text x="{frame.left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end" fill="{MUTED}" font-size="11">{_pct(value)}</text>'
        )
    parts.append(
        f'<text x="12" y="{frame.top + 4}" fill="{MUTED}" font-size="11" '
        f'transform="rotate(-90 12 {frame.top + 4})" text-anchor="end">{escape(label)}</text>'
    )
    return "".join(parts)


@dataclass(frozen=True)
class _Series:
    """One line of the release chart: how to read it, and how it looks beside colour."""

    name: str
    read: Callable[[ReleaseSummary], ProportionOut | None]
    colour: str
    marker: str  # circle, square or diamond
    dash: str  # an SVG stroke-dasharray, "" for solid
    whiskers: bool  # draw the 95% interval


SERIES = (
    _Series("NFR on old classes (line: 95% interval)", lambda r: r.nfr, NFR_COLOUR, "circle", "",
            True),
    _Series("cumulative NFR, worst baseline (dotted)", lambda r: r.cumulative_nfr, NEW_COLOUR,
            "diamond", "2 3", False),
    _Series("error, all classes (dashed)", lambda r: r.error_all, ERROR_COLOUR, "square", "5 3",
            False),
)  # fmt: skip


def _marker(series: _Series, x: float, y: float, title: str, role: str = "mark") -> str:
    kind = f'class="{role}-{series.marker}" fill="{series.colour}"'
    if series.marker == "circle":
        shape = f'<circle {kind} cx="{x:.1f}" cy="{y:.1f}" r="4">'
        end = "</circle>"
    elif series.marker == "square":
        shape = f'<rect {kind} x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8">'
        end = "</rect>"
    else:
        points = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}"
        shape, end = f'<polygon {kind} points="{points}">', "</polygon>"
    return f"{shape}<title>{escape(title)}</title>{end}"


def _series_marks(
    series: _Series, releases: Sequence[ReleaseSummary], xs: list[float], frame: _Frame, top: float
) -> str:
    parts, line = [], []
    for release, x in zip(releases, xs, strict=True):
        value = series.read(release)
        if value is None or value.value is None:
            continue
        y = frame.y(value.value / top)
        line.append(f"{x:.1f},{y:.1f}")
        if series.whiskers:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(value.lower / top):.1f}" '
                f'y2="{frame.y(value.upper / top):.1f}" stroke="{series.colour}"/>'
            )
        title = f"v{release.version}: {series.name.split(' (')[0]} {_pct(value.value, 2)}"
        parts.append(_marker(series, x, y, title))
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    polyline = f'<polyline points="{" ".join(line)}" fill="none" stroke="{series.colour}"{dash}/>'
    return polyline + "".join(parts)


def release_chart(releases: Sequence[ReleaseSummary], width: int = 720) -> Markup:
    """NFR on old classes (circles, with 95% intervals), the cumulative NFR against the
    worst baseline (diamonds) and the error (squares), by version."""
    measured = [r for r in releases if r.nfr is not None]
    if not measured:
        return Markup('<p class="muted">No release has a flip report yet.</p>')
    frame = _Frame(width, 256, bottom=56)
    values = [
        v.upper if s.whiskers else (v.value or 0.0)
        for r in measured
        for s in SERIES
        if (v := s.read(r)) is not None
    ]
    top = max(max(values), 0.01) * 1.1
    step = 1 / max(len(measured) - 1, 1)
    xs = [frame.x(i * step if len(measured) > 1 else 0.5) for i in range(len(measured))]
    labels = "".join(
        f'<text x="{x:.1f}" y="{frame.height - 38}" text-anchor="middle" font-size="11" '
        f'fill="{MUTED}">v{r.version}</text>'
        for r, x in zip(measured, xs, strict=True)
    )
    marks = "".join(_series_marks(s, measured, xs, frame, top) for s in SERIES)
    legend = "".join(
        _marker(s, frame.left + 8 + 230 * i, frame.height - 12, s.name, "legend")
        + f'<text x="{frame.left + 16 + 230 * i}" y="{frame.height - 8}" font-size="11" '
        f'fill="{INK}">{escape(s.name)}</text>'
        for i, s in enumerate(SERIES)
    )
    summary = "; ".join(
        f"v{r.version}: NFR {_pct(r.nfr.value if r.nfr else None)}, cumulative "
        f"{_pct(r.cumulative_nfr.value if r.cumulative_nfr else None)}, error "
        f"{_pct(r.error_all.value if r.error_all else None)}"
        for r in measured
    )
    body = _y_axis(frame, top, "rate") + marks + labels + legend
    return _svg(width, frame.height, f"NFR and error by release. {summary}", body)


def class_bars(per_class: Sequence[ClassFlipsOut], width: int = 760, most: int = 20) -> Markup:
    """The `most` old classes with the most flips, a bar each with its count, NFR and
    accuracy before and after."""
    rows = sorted((c for c in per_class if c.flips), key=lambda c: (-c.flips, c.index))[:most]
    if not rows:
        return Markup('<p class="muted">No old class lost an image.</p>')
    row_height, label_width = 20, 160
    height = row_height * len(rows) + 8
    top = rows[0].flips
    bar_space = width - label_width - 290
    parts = []
    for i, c in enumerate(rows):
        y = 4 + i * row_height
        length = max(1.0, bar_space * c.flips / top)
        accuracy = f"accuracy {_pct(c.accuracy_before.value)} → {_pct(c.accuracy_after.value)}"
        text = f"{c.flips} of {c.count} ({_pct(c.nfr.value)}), {accuracy}"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{escape(_short(c.name, 22))}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row_height - 6}" '
            f'fill="{NFR_COLOUR}"><title>{escape(c.name)}: {text}</title></rect>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 14}" font-size="12" '
            f'fill="{INK}">{text}</text>'
        )
    label = "Flips per old class, most first: " + "; ".join(
        f"{c.name} {c.flips} of {c.count}" for c in rows
    )
    return _svg(width, height, label, "".join(parts), "chart bars")


def flip_heatmap(
    matrix: FlipMatrixOut, num_old: int, cell: int = 18, label_width: int = 150
) -> Markup:
    """Flips by true old class (rows) and wrong new prediction (columns): columns of other
    old classes first, then new classes behind a divider and under their own heading."""
    cells = [*matrix.to_old, *matrix.to_new]
    if not cells:
        return Markup('<p class="muted">No flips.</p>')
    rows = sorted({(c.true, c.true_name) for c in cells})
    columns = sorted({(c.predicted, c.predicted_name) for c in cells})
    old_columns = [col for col in columns if col[0] < num_old]
    new_columns = [col for col in columns if col[0] >= num_old]
    gap = cell if old_columns and new_columns else 0
    x_of = {col: label_width + i * cell for i, col in enumerate(old_columns)}
    first_new = label_width + gap + len(old_columns) * cell
    x_of.update({col: first_new + i * cell for i, col in enumerate(new_columns)})
    header = 110
    y_of = {row: header + i * cell for i, row in enumerate(rows)}
    most = max(c.count for c in cells)
    parts = [_heat_headings(old_columns, new_columns, x_of, label_width, gap, cell)]
    for col, x in x_of.items():
        parts.append(
            f'<text transform="translate({x + cell / 2 + 4:.0f},{header - 6}) rotate(-60)" '
            f'font-size="11" fill="{INK}">{escape(_short(col[1], 14))}</text>'
        )
    for row, y in y_of.items():
        parts.append(
            f'<text x="{label_width - 6}" y="{y + cell - 5}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{escape(_short(row[1], 20))}</text>'
        )
    for c in cells:
        x, y = x_of[(c.predicted, c.predicted_name)], y_of[(c.true, c.true_name)]
        shade = 0.15 + 0.85 * c.count / most
        colour = NFR_COLOUR if c.predicted < num_old else NEW_COLOUR
        parts.append(
            f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{colour}" '
            f'fill-opacity="{shade:.2f}"><title>{escape(c.true_name)} → '
            f"{escape(c.predicted_name)}: {c.count} flips</title></rect>"
            f'<text x="{x + cell / 2 - 0.5:.1f}" y="{y + cell - 5}" text-anchor="middle" '
            f'font-size="10" fill="{"#fff" if shade > 0.55 else INK}">{c.count}</text>'
        )
    width = label_width + gap + len(columns) * cell + 20
    height = header + len(rows) * cell + 10
    label = (
        f"Flip matrix: {matrix.to_old_total} flips to another old class, "
        f"{matrix.to_new_total} to a new class. "
        + "; ".join(f"{c.true_name} to {c.predicted_name}: {c.count}" for c in cells[:50])
    )
    return _svg(width, height, label, "".join(parts), "chart heatmap")


def _heat_headings(
    old_columns: list[tuple[int, str]],
    new_columns: list[tuple[int, str]],
    x_of: dict[tuple[int, str], int],
    label_width: int,
    gap: int,
    cell: int,
) -> str:
    parts = []
    if old_columns:
        parts.append(
            f'<text x="{label_width}" y="12" font-size="11" font-weight="bold" '
            f'fill="{NFR_COLOUR}">→ another old class</text>'
        )
    if new_columns:
        x = x_of[new_columns[0]]
        parts.append(
            f'<text x="{x}" y="26" font-size="11" font-weight="bold" '
            f'fill="{NEW_COLOUR}">→ a new class</text>'
        )
        if gap:
            divider = x - gap / 2
            parts.append(
                f'<line x1="{divider}" x2="{divider}" y1="30" y2="100%" stroke="{MUTED}" '
                'stroke-dasharray="3 3"/>'
            )
    return "".join(parts)


def candidates_chart(
    rows: Sequence[CandidateRow], max_error: float | None, width: int = 520
) -> Markup:
    """Validation NFR against validation error per candidate: chosen one ringed and named,
    the error budget a dashed vertical line."""
    points = [r for r in rows if r.val_nfr is not None and r.val_error is not None]
    if not points:
        return Markup('<p class="muted">The job recorded no candidates.</p>')
    frame = _Frame(width, 260, bottom=48)
    errors = [r.val_error or 0.0 for r in points] + ([max_error] if max_error else [])
    low, high = min(errors), max(errors)
    pad = max((high - low) * 0.15, 0.005)
    low, high = max(low - pad, 0.0), high + pad
    top = max(max(r.val_nfr or 0.0 for r in points) * 1.2, 0.01)

    def x_of(error: float) -> float:
        return frame.x((error - low) / (high - low))

    parts = [_y_axis(frame, top, "validation NFR")]
    for i in range(5):
        error = low + (high - low) * i / 4
        parts.append(
            f'<text x="{x_of(error):.1f}" y="{frame.height - 30}" text-anchor="middle" '
            f'font-size="11" fill="{MUTED}">{_pct(error)}</text>'
        )
    parts.append(
        f'<text x="{frame.x(0.5):.1f}" y="{frame.height - 14}" text-anchor="middle" '
        f'font-size="11" fill="{MUTED}">validation error</text>'
    )
    if max_error is not None:
        x = x_of(max_error)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.y(0):.1f}" '
            f'stroke="{MUTED}" stroke-dasharray="6 4"/><text x="{x + 4:.1f}" '
            f'y="{frame.top + 10}" font-size="11" fill="{MUTED}">error budget '
            f"({_pct(max_error)})</text>"
        )
    for r in points:
        x, y = x_of(r.val_error or 0.0), frame.y((r.val_nfr or 0.0) / top)
        name = _bias_name(r)
        ring = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{INK}" stroke-width="2"/>'
            if r.chosen
            else ""
        )
        parts.append(
            f'{ring}<path d="M{x - 5:.1f},{y + 4:.1f} L{x:.1f},{y - 5:.1f} L{x + 5:.1f},'
            f'{y + 4:.1f} Z" fill="{ERROR_COLOUR}"><title>{name}: NFR {_pct(r.val_nfr, 2)}, '
            f"error {_pct(r.val_error, 2)}</title></path>"
            f'<text x="{x + 11:.1f}" y="{y + 4:.1f}" font-size="11" fill="{INK}">'
            f"{name}{' (chosen)' if r.chosen else ''}</text>"
        )
    label = "Candidates, validation NFR against error: " + "; ".join(
        f"{_bias_name(r)}{' (chosen)' if r.chosen else ''}: NFR {_pct(r.val_nfr)}, "
        f"error {_pct(r.val_error)}"
        for r in points
    )
    return _svg(width, frame.height, label, "".join(parts), "chart candidates")


def _bias_name(row: CandidateRow) -> str:
    if row.relative_bias is not None:
        return f"bias {row.relative_bias:g}× margin"
    return "no bias" if row.bias is None else f"bias {row.bias:g}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
