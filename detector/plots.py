"""Figures shared by the HTML report and the notebooks.

Every function takes data the library already produced (events, the feature
table, alerts, bench rows), draws one figure and returns it. Nothing here
imports the bench: the bench returns rows and these draw them. They build a
`matplotlib.figure.Figure` directly rather than going through pyplot, so the
report can draw hundreds of figures without touching global state; pass `ax=`
to draw into an axes of your own.

Text from the data (account ids, feature, scenario and rule set names, titles) is
drawn through :func:`figure_text`: a ``$`` in an account id is a dollar sign,
never the start of a formula.

Times are drawn in local wall-clock time (`timezone`, default `DEFAULT_TIMEZONE`):
behaviour (office hours, nights) is read in local time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from detector.errors import DetectorError
from detector.metrics import summary_table
from detector.outputs import atomic_path
from detector.textsafe import visible
from detector.timeutil import to_utc, utc_timestamp
from detector.vocabulary import (
    ACTION_GROUPS,
    DEFAULT_TIMEZONE,
    GROUP_ORDER,
    RECORD_ACTIONS,
    SEVERITIES_URGENT_FIRST,
    SEVERITY_COLOURS,
    UNKNOWN_SEVERITY_COLOUR,
)

GROUP_COLOURS = {
    "sessions": "#9e9e9e",
    "record reads": "#1f77b4",
    "searches & exports": "#ff7f0e",
    "account admin": "#9467bd",
    "other": "#bcbd22",
}


def figure_text(value: object) -> str:
    """Text from the data as a figure shows it: controls made visible and ``$`` taken
    literally (matplotlib reads ``$...$`` as mathematics, and raises on an id such as
    ``a$\\frac$``)."""
    return visible(value).replace("$", r"\$")


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def _local_naive(stamps, timezone: str):
    """UTC instants as naive local wall-clock times, which matplotlib draws as-is."""
    if isinstance(stamps, pd.Timestamp):
        return utc_timestamp(stamps).tz_convert(timezone).tz_localize(None)
    return pd.DatetimeIndex(stamps).tz_convert(timezone).tz_localize(None)


def hourly_activity(
    events: pd.DataFrame,
    account_id: str,
    start=None,
    end=None,
) -> pd.DataFrame:
    """One account's activity per UTC hour between `start` and `end` (inclusive hours).

    Returns one row per hour (a `DatetimeIndex` in UTC, hours without events
    included as zeros), one column per action group (see `GROUP_ORDER`) and a
    `records` column: records exposed that hour (record actions plus
    `records_returned` of searches and exports).
    """
    mine = events[events["account_id"] == account_id]
    stamps = to_utc(mine["timestamp"])
    # Hours are floored in UTC: France's offsets are whole hours, so UTC hours
    # are local hours, and UTC has no ambiguous hour at the autumn switch.
    hours = stamps.dt.floor("h")
    groups = mine["action"].map(ACTION_GROUPS).fillna("other")
    counts = pd.crosstab(hours, groups).reindex(columns=list(GROUP_ORDER), fill_value=0)
    record_actions = mine["action"].isin(RECORD_ACTIONS).astype("int64")
    if "records_returned" in mine:
        returned = pd.to_numeric(mine["records_returned"], errors="coerce").fillna(0)
    else:
        returned = pd.Series(0, index=mine.index)
    counts["records"] = (record_actions + returned).groupby(hours).sum()
    first = (
        utc_timestamp(start).floor("h")
        if start is not None
        else (hours.min() if len(hours) else None)
    )
    last = (
        utc_timestamp(end).floor("h") if end is not None else (hours.max() if len(hours) else None)
    )
    if first is None or last is None or first > last:
        return pd.DataFrame(columns=[*GROUP_ORDER, "records"], dtype="int64").rename_axis("hour")
    full = pd.date_range(first, last, freq="h", tz="UTC", name="hour")
    return counts.reindex(full, fill_value=0).astype("int64")


def account_timeline(
    events: pd.DataFrame,
    account_id: str,
    *,
    window_start=None,
    window_end=None,
    detected_at=None,
    rule_times: Sequence | None = None,
    days_before: float = 3,
    days_after: float = 1,
    timezone: str = DEFAULT_TIMEZONE,
    title: str | None = None,
) -> Figure:
    """An account's activity per hour around an alert window, detection instant marked.

    Top: events per hour, stacked by action group. Bottom: records exposed per
    hour. The alert window is shaded, `detected_at` is a red line and each
    rule's first-hold instant (`rule_times`) a small tick. The span runs from
    `days_before` days before the window to `days_after` days after it (or
    after `detected_at`, whichever is later).
    """
    anchor_start = utc_timestamp(window_start if window_start is not None else detected_at)
    anchor_end = utc_timestamp(window_end if window_end is not None else detected_at)
    if detected_at is not None:
        anchor_end = max(anchor_end, utc_timestamp(detected_at))
    start = anchor_start - pd.Timedelta(days=days_before)
    end = anchor_end + pd.Timedelta(days=days_after)
    hourly = hourly_activity(events, account_id, start, end)

    # Fixed margins: constrained layout costs more than the drawing itself, and
    # the report draws one of these per alert.
    figure = Figure(figsize=(9, 3.6))
    figure.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.14, hspace=0.08)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    # Steps (one artist per series) rather than bars (one artist per hour): a
    # month of hours as bars takes seconds to draw.
    starts = _local_naive(hourly.index, timezone)
    edges = (
        mdates.date2num(starts.append(pd.DatetimeIndex([starts[-1] + pd.Timedelta(hours=1)])))
        if len(starts)
        else np.array([0.0])
    )
    base = np.zeros(len(hourly))
    for group in GROUP_ORDER:
        values = hourly[group].to_numpy()
        if values.any():
            top.stairs(
                base + values,
                edges,
                baseline=base,
                fill=True,
                label=group,
                color=GROUP_COLOURS[group],
            )
            base = base + values
    bottom.stairs(hourly["records"].to_numpy(), edges, fill=True, color="#455a64")
    for axes in (top, bottom):
        axes.xaxis_date()
        axes.set_ylim(bottom=0)
    span_days = (end - start) / pd.Timedelta(days=1)
    bottom.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(span_days // 10) + 1)))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    top.set_ylabel("events / hour")
    bottom.set_ylabel("records / hour")
    bottom.set_xlabel(f"local time ({timezone})")
    for axes in (top, bottom):
        if window_start is not None and window_end is not None:
            axes.axvspan(
                _local_naive(window_start, timezone),
                _local_naive(window_end, timezone),
                color="#ffcdd2",
                alpha=0.5,
                zorder=0,
            )
        if detected_at is not None:
            axes.axvline(_local_naive(detected_at, timezone), color="#c62828", linewidth=1.5)
        axes.grid(axis="y", alpha=0.3)
    for instant in rule_times or ():
        if instant is not None and not pd.isna(instant):
            top.axvline(
                _local_naive(instant, timezone),
                color="#c62828",
                linewidth=0.8,
                linestyle=":",
                ymin=0.85,
            )
    if detected_at is not None:
        top.annotate(
            "detected",
            xy=(_local_naive(detected_at, timezone), 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            color="#c62828",
            fontsize=8,
        )
    if base.any():
        top.legend(loc="upper left", fontsize=7, frameon=False)
    top.set_title(figure_text(title or f"{account_id}: activity per hour"), fontsize=10)
    return figure


def account_vs_peers(
    features: pd.DataFrame,
    account_id: str,
    feature: str = "records_touched",
    *,
    peer_column: str = "account_type",
    log_scale: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """One account's daily `feature` against its peers' median and 5-95 % band.

    Peers are the other accounts with the same `peer_column` value in the
    feature table (one row per account and day). Days where the account was
    idle are absent from the table: its line breaks there rather than
    drawing a slope through days it did nothing.
    """
    if feature not in features:
        raise KeyError(f"the feature table has no column {feature!r}")
    mine = features[features["account_id"] == account_id]
    if mine.empty:
        raise KeyError(f"account {account_id!r} is not in the feature table")
    peers = features[features["account_id"] != account_id]
    if peer_column in features:
        peers = peers[peers[peer_column].isin(mine[peer_column].unique())]
        peer_label = ", ".join(map(str, mine[peer_column].unique()))
    else:
        peer_label = "all accounts"
    band = peers.groupby("day")[feature].quantile([0.05, 0.5, 0.95]).unstack()
    figure, ax = _new_axes(ax, (9, 3.2))
    days = pd.to_datetime(band.index)
    ax.fill_between(days, band[0.05], band[0.95], color="#90a4ae", alpha=0.35, label="peers 5-95 %")
    ax.plot(days, band[0.5], color="#546e7a", linewidth=1, label="peers median")
    own = mine.set_index(pd.to_datetime(mine["day"]))[feature]
    own = own.reindex(own.index.union(days))
    ax.plot(
        own.index,
        own.to_numpy(dtype=float),
        marker="o",
        markersize=3,
        color="#c62828",
        linewidth=1.5,
        label=figure_text(account_id),
    )
    if log_scale:
        ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel(figure_text(feature))
    ax.set_title(
        figure_text(f"{account_id} against its peers ({peer_label}): {feature} per day"),
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure


def activity_by_hour_of_day(
    events: pd.DataFrame,
    account_id: str,
    *,
    split_at=None,
    timezone: str = DEFAULT_TIMEZONE,
    ax: Axes | None = None,
) -> Figure:
    """Share of an account's events per local hour of day.

    With `split_at` (an instant, e.g. an alert's window start), events before
    it (the account's habits) and from it on are drawn side by side, so an
    attacker's hours stand out against the owner's.
    """
    mine = events[events["account_id"] == account_id]
    stamps = to_utc(mine["timestamp"])
    local_hour = stamps.dt.tz_convert(timezone).dt.hour
    figure, ax = _new_axes(ax, (8, 3))
    hours = np.arange(24)
    if split_at is None:
        parts = {"all events": local_hour}
    else:
        before = stamps < utc_timestamp(split_at)
        parts = {"before": local_hour[before], "from the alert window on": local_hour[~before]}
    width = 0.8 / len(parts)
    for i, (label, values) in enumerate(parts.items()):
        counts = np.bincount(values.to_numpy(dtype="int64"), minlength=24)
        share = counts / counts.sum() if counts.sum() else counts.astype(float)
        ax.bar(
            hours + i * width - 0.4 + width / 2,
            share,
            width=width,
            label=f"{label} ({counts.sum()} events)",
        )
    ax.set_xticks(hours)
    ax.set_xlabel(f"local hour of day ({timezone})")
    ax.set_ylabel("share of events")
    ax.set_title(figure_text(f"{account_id}: events by hour of day"), fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return figure


def evidence_bars(
    evidence: pd.DataFrame, *, title: str | None = None, ax: Axes | None = None
) -> Figure:
    """An alert's features next to their baselines: value, own median, peers' p95.

    `evidence` is the table from `detector.report.evidence_table` (columns
    `feature`, `value`, `own_median`, `peer_p95`). Drawn on a symlog scale since
    an attack's volume is often orders of magnitude above normal.
    """
    figure, ax = _new_axes(ax, (8, 0.5 + 0.45 * max(len(evidence), 1)))
    y = np.arange(len(evidence))
    height = 0.27
    series = [
        ("value", "#c62828", "this window"),
        ("own_median", "#1f77b4", "own median"),
        ("peer_p95", "#78909c", "peers' 95th pct"),
    ]
    for i, (column, colour, label) in enumerate(series):
        values = pd.to_numeric(
            evidence.get(column, pd.Series(np.nan, index=evidence.index)), errors="coerce"
        )
        ax.barh(
            y + (1 - i) * height,
            values.fillna(0).to_numpy(),
            height=height,
            color=colour,
            label=label,
        )
    ax.set_yticks(y, [figure_text(f) for f in evidence["feature"]] if len(evidence) else [])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_title(figure_text(title or "features against their baselines"), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure


def alerts_over_time(
    alerts: pd.DataFrame, *, timezone: str = DEFAULT_TIMEZONE, ax: Axes | None = None
) -> Figure:
    """Alerts per local day, stacked by severity."""
    figure, ax = _new_axes(ax, (8, 2.8))
    if len(alerts):
        day = _local_naive(to_utc(alerts["detected_at"]), timezone).normalize()
        table = pd.crosstab(day, alerts["severity"].astype(str))
        base = np.zeros(len(table))
        for severity in [s for s in SEVERITIES_URGENT_FIRST if s in table] + [
            s for s in table if s not in SEVERITY_COLOURS
        ]:
            ax.bar(
                table.index,
                table[severity],
                bottom=base,
                width=0.8,
                color=SEVERITY_COLOURS.get(severity, UNKNOWN_SEVERITY_COLOUR),
                label=figure_text(severity),
            )
            base = base + table[severity].to_numpy()
        ax.legend(fontsize=7, frameon=False)
        figure.autofmt_xdate()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("alerts")
    ax.set_title(f"alerts per day (detection time, {timezone})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return figure


def bench_figure(rows: pd.DataFrame, knob: str | None = None) -> Figure:
    """The figure of a bench's rows: :func:`stealth_curve` for a sweep, else :func:`bench_comparison`.

    What `detector bench --plot` saves and notebook 02 shows. DetectorError when
    there are no rows.
    """
    if rows.empty:
        raise DetectorError("nothing to plot: the bench produced no rows")
    return stealth_curve(rows, knob) if knob else bench_comparison(rows)


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write `figure` at `path` (format from its suffix: PNG, SVG, PDF), atomically; the path back."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    return path


def bench_comparison(rows: pd.DataFrame) -> Figure:
    """Rule sets side by side on a bench's rows (`detector.bench.BenchResult.rows`).

    Three panels, medians over seeds: time to detect per scenario (a hatched
    bar marks a scenario missed on every seed), share of the attack's records
    exposed before detection per scenario, and false alerts per 1000 benign
    account-days.
    """
    table = summary_table(rows)
    table["run"] = (table["ruleset"].astype(str) + " / " + table["mode"].astype(str)).map(
        figure_text
    )
    runs = list(dict.fromkeys(table["run"]))
    scenarios = list(dict.fromkeys(table["scenario"]))
    figure = Figure(figsize=(13, 4), layout="constrained")
    ttd_ax, exposed_ax, false_ax = figure.subplots(1, 3, width_ratios=[2, 2, 1.2])
    x = np.arange(len(scenarios))
    width = 0.8 / max(len(runs), 1)
    ttd = table.set_index(["run", "scenario"])["ttd_h"]
    exposed = table.set_index(["run", "scenario"])["exposed"]
    ceiling = max(float(np.nanmax(ttd.to_numpy(dtype=float))) if ttd.notna().any() else 1.0, 1.0)
    for i, run in enumerate(runs):
        colour = f"C{i}"
        hours = np.array([ttd.get((run, s), np.nan) for s in scenarios], dtype=float)
        missed = np.isnan(hours)
        ttd_ax.bar(x[~missed] + i * width, hours[~missed], width, color=colour, label=run)
        # A missed scenario: an empty hatched bar taller than every detection.
        ttd_ax.bar(
            x[missed] + i * width,
            np.full(missed.sum(), ceiling * 1.05),
            width,
            fill=False,
            hatch="//",
            edgecolor=colour,
        )
        shares = np.array([exposed.get((run, s), np.nan) for s in scenarios], dtype=float)
        exposed_ax.bar(x + i * width, shares, width, color=colour, label=run)
    for axes in (ttd_ax, exposed_ax):
        axes.set_xticks(
            x + width * (len(runs) - 1) / 2,
            [figure_text(s) for s in scenarios],
            rotation=30,
            ha="right",
            rotation_mode="anchor",
            fontsize=8,
        )
        axes.grid(axis="y", alpha=0.3)
    ttd_ax.set_ylabel("hours")
    ttd_ax.set_title("time to detect (hatched: missed)", fontsize=10)
    ttd_ax.legend(fontsize=7, frameon=False)
    exposed_ax.set_ylim(0, 1.05)
    exposed_ax.set_ylabel("share of the attack's records")
    exposed_ax.set_title("exposed before detection (1 = missed)", fontsize=10)
    false_alerts = table.drop_duplicates("run").set_index("run")["fp_per_1000"].reindex(runs)
    false_ax.barh(
        runs, false_alerts.to_numpy(dtype=float), color=[f"C{i}" for i in range(len(runs))]
    )
    false_ax.invert_yaxis()
    false_ax.set_xlabel("per 1000 benign account-days")
    false_ax.set_title("false alerts", fontsize=10)
    false_ax.grid(axis="x", alpha=0.3)
    return figure


def stealth_curve(rows: pd.DataFrame, knob: str | None = None) -> Figure:
    """A stealth sweep as curves: detection and exposure against the knob's values.

    `rows` are a swept bench's rows (with `knob_value`). Left: share of seeds
    on which each scenario was detected; right: median share of the attack's
    records exposed before detection. One colour per scenario, one line style
    per rule set and mode; scenarios lacking the knob (``knob_applied`` 0) are left out.
    """
    if "knob_value" not in rows:
        raise KeyError("these bench rows hold no stealth sweep (no knob_value column)")
    if knob is None and "knob" in rows and len(rows):
        knob = str(rows["knob"].iloc[0])
    if "knob_applied" in rows:
        # Scenarios lacking the knob ran as written: flat lines that say nothing of it.
        rows = rows[rows["knob_applied"] != 0]
    values = list(dict.fromkeys(rows["knob_value"]))
    positions = np.arange(len(values))
    runs = list(dict.fromkeys(rows["ruleset"].astype(str) + " / " + rows["mode"].astype(str)))
    scenarios = list(dict.fromkeys(rows["scenario"]))
    styles = ["-", "--", ":", "-."]
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    detected_ax, exposed_ax = figure.subplots(1, 2)
    grouped = rows.assign(run=rows["ruleset"].astype(str) + " / " + rows["mode"].astype(str))
    grouped = grouped.groupby(["run", "scenario", "knob_value"], sort=False)
    rate = grouped["detected"].mean()
    exposed = grouped["exposed_before_detection"].median()
    for r, run in enumerate(runs):
        for s, scenario in enumerate(scenarios):
            label = figure_text(f"{scenario} ({run})" if len(runs) > 1 else scenario)
            style = {"color": f"C{s}", "linestyle": styles[r % len(styles)], "marker": "o"}
            detected_ax.plot(
                positions,
                [rate.get((run, scenario, v), np.nan) for v in values],
                label=label,
                **style,
            )
            exposed_ax.plot(
                positions, [exposed.get((run, scenario, v), np.nan) for v in values], **style
            )
    for axes, title in (
        (detected_ax, "share of seeds detected"),
        (exposed_ax, "records exposed before detection (median share)"),
    ):
        axes.set_xticks(positions, [figure_text(v) for v in values])
        axes.set_xlabel(figure_text(knob or "knob value"))
        axes.set_ylim(-0.05, 1.05)
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
    detected_ax.legend(fontsize=7, frameon=False)
    return figure
