"""The detector end to end: log -> features -> rules and model -> alerts.

``prepare`` does the expensive part once (reading, validating, the feature
table); ``detect`` applies a rule set and/or the model to it, so a benchmark
can compare rule sets on one data set without rebuilding features.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from detector import vocabulary
from detector.alerts import build_alerts, empty_alerts, first_hold_times
from detector.engine.local import (
    KeepDay,
    assemble,
    attach,
    build_features,
    last_day_handover,
    run_kernel,
)
from detector.engine.lock import state_lock
from detector.engine.sources import malloc_policy, release_memory, source_of
from detector.engine.state import (
    FULL_HISTORY_DAYS,
    REFIT_AFTER_DAYS,
    Continuation,
    ContinuedSource,
    Kept,
    State,
    caseload_index_at,
    caseload_key,
    continue_kept_day,
    handed_kept,
    kept_day_of,
    kept_scratch,
    load_state,
    merge,
    once_each,
    read_day,
    save_state,
    stored_caseload_index,
    without_day,
    write_kept,
)
from detector.errors import DetectorError
from detector.features.kernel import (
    Aggregates,
    caseload_index,
    caseloads_of,
    forget_caseload_index,
    lookup,
)
from detector.features.prefix import Replay, replay_events
from detector.features.table import CARRIED, FeatureTable, Internal
from detector.incidents import empty_incidents, group_incidents
from detector.model import WindowModel
from detector.rules import RuleSet, load_ruleset
from detector.schema import found_caseloads, normalise, read_caseloads
from detector.timeutil import check_timezone
from detector.vocabulary import DEFAULT_TIMEZONE

MODES = vocabulary.MODES  # kept as a name: notebooks and the bench read pipeline.MODES
ENGINES = ("local", "dask")
MIN_WINDOWS_TO_FIT = 20  # fewer account-days than this tell a forest nothing
# Candidate events re-read at once for detected_at (100M events can have millions of
# candidate events; one group keeps small logs to one read). A group of 3M rose to
# 1.3 GB over the table at 100M events (4.4 GB in all); 2M leaves room under 4 GB.
REPLAY_READ_EVENTS = 2_000_000
# From this many windows, a consumed table's internal block and caseload table wait on
# disk while the rules and the model run (2.7M windows at 100M events: 0.5 GB each,
# beside a 0.4 GB model matrix); only the candidates' share is read back.
SET_ASIDE_FROM_WINDOWS = 1_000_000
CASELOAD_BATCH_ROWS = 1_000_000  # caseload pairs written, and read back, at a time
# Blocks from this size up are mapped on their own and given back when freed (see
# _give_back_large_blocks): a column of 1.85M windows (100M events) is 15 MB; the
# 10M shape log's arrays (1M events: 8 MB) stay on the reused heap, as before.
OWN_MAPPING_BYTES = 8 << 20
Progress = Callable[[str], None]


@dataclass
class Prepared:
    """A log's feature table (built partition by partition), ready for any rule set or model.

    No events are held: the replay behind ``detected_at`` re-reads the alerted
    windows' events from ``features.source``.
    """

    features: FeatureTable
    notices: list[str] = field(default_factory=list)
    scored_days: set[int] | None = None  # local day numbers to alert on (None: every day)
    state: State | None = None  # the --state directory this run reads and updates
    history: list[Aggregates] = field(default_factory=list)  # what the state will keep
    continuation: Continuation | None = None  # the stored day this log completed
    has_ids: bool = False  # the log carries its own event_id
    kept: Future | None = None  # the state's kept day, being written (a Kept or None)

    @property
    def rejects(self) -> pd.DataFrame:
        return self.features.rejects


@dataclass
class ScoreResult:
    """What ``score_log`` gives: alerts, the feature table, rejected rows, notices."""

    alerts: pd.DataFrame
    features: pd.DataFrame
    rejects: pd.DataFrame
    notices: list[str]
    events: int = 0
    accounts: int = 0
    incidents: pd.DataFrame = field(default_factory=empty_incidents)


def prepare(
    log: str | Path | pd.DataFrame,
    caseloads: str | Path | pd.DataFrame | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    progress: Progress | None = None,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    state: str | Path | None = None,
    uses_model: bool = True,
) -> Prepared:
    """Build the feature table of a log (path or DataFrame), one partition of days at a time.

    Without ``caseloads``, a path log looks for ``<stem>.caseloads.parquet`` beside it.
    ``engine`` is ``local`` (``workers`` processes, default one per core) or
    ``dask`` (the same kernel on a ``dask.distributed`` cluster at ``scheduler``,
    a local cluster without one). With ``state`` (a directory), the stored
    history is read and only the log's new days are scored (see
    :mod:`detector.engine.state`); :func:`score_log` updates the state.
    ``uses_model=False`` (rules only) spares the stored days' baselines, which
    only fitting a model on them needs.
    """
    say = progress or (lambda message: None)
    check_timezone(timezone)
    if engine not in ENGINES:
        raise DetectorError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    say("planning partitions")
    has_ids = False
    if isinstance(log, pd.DataFrame):
        has_ids = "event_id" in log.columns
        log = normalise(log)
    elif caseloads is None:
        caseloads = found_caseloads(log)
    caseload_file = None if isinstance(caseloads, pd.DataFrame) else caseloads
    # With a state, the caseload file's hash first: a state holding its index spares reading
    # it. Hashed, and the index kept for that hash mapped, in a thread (hashlib and Arrow's
    # reads release the interpreter) while the state is loaded.
    hashing = ThreadPoolExecutor(max_workers=1)
    key = hashing.submit(_stored_index, state, caseload_file if state is not None else None)
    hashing.shutdown(wait=False)
    if caseload_file is not None and state is None:
        caseloads = read_caseloads(caseload_file)
    source = source_of(log, timezone, streaming=engine == "local")
    has_ids = has_ids or (not isinstance(log, pd.DataFrame) and "event_id" in source.columns)
    mapper = None
    if engine == "dask":
        from detector.engine.dask import dask_mapper

        mapper = dask_mapper(scheduler, workers)
    if state is None:
        table = build_features(source, caseloads, timezone, workers, say, mapper=mapper)
        return Prepared(table, list(table.notices))
    stored = load_state(state, timezone)
    stored.timezone = timezone
    key, mapped = key.result()  # done before the workers fork (no thread runs then)
    if mapped is not None and mapped[1] == stored.version and stored.caseload_key == key:
        index = mapped[0]
    else:  # none kept for this file, or another run swapped the state meanwhile
        index = stored_caseload_index(stored, key)
    del mapped
    stored_only = caseloads is None and stored.caseload_key is not None
    if stored_only:  # none given nor beside the log: the one the state was built with
        key = stored.caseload_key
        index = stored_caseload_index(stored, key)
    if index is not None:  # the caseload file of an earlier run: its index stands for it
        caseloads = index
    elif caseload_file is not None:
        caseloads = read_caseloads(caseload_file)
    # Meanwhile a thread imports what the model stage will: skops to load the stored model
    # (it imports scikit-learn), scikit-learn alone to fit one, nothing for rules only.
    warm_up = None if not uses_model else "skops.io" if stored.model_path else "sklearn.ensemble"
    # The local engine's partitions of the log's last day write its events for the state
    # to keep (a cluster's workers may not share a file system: the day is read again).
    handover = last_day_handover(source.partitions()) if mapper is None else None
    keep = None if handover is None else handover[0]
    if keep is not None and stored.kept_day is not None and stored.kept_day != keep.day:
        keep = (keep, KeepDay(stored.kept_day, keep.folder))  # the day to complete, too
    # The partition holding the kept day alone completes it beside the others (a local
    # worker: a cluster's may not see the state's files).
    complete = kept_day_of(stored, has_ids) if mapper is None else None
    run = run_kernel(
        source, caseloads, timezone, workers, say, mapper, True, warm_up, keep, complete
    )
    if stored_only and index is not None:
        run.notices.append(
            "no caseload table given: the one stored with the state is used (the last one a"
            " run was given); pass --caseloads with the current table"
        )
    log_days = {int(d) for p in run.parts for d in np.unique(p.windows["day"].to_numpy())}
    # A last day newer than every stored day is the day the state will keep: its events
    # are written from now, in a thread beside completing the kept day (one core), rather
    # than beside assembly. Its files are cleaned up once that completion has read its own.
    keeping = ThreadPoolExecutor(max_workers=1)
    kept = None
    if _new_last_day(stored, log_days):
        kept = keeping.submit(
            _keep_last_day, stored, source, run.parts, log_days, None, has_ids, handover
        )
    if stored.kept_day in log_days:
        say(f"completing {pd.Timestamp(stored.kept_day, unit='D').date()} with its kept events")
    handed = None
    if handover is not None and stored.kept_day is not None:
        handed = KeepDay(stored.kept_day, handover[0].folder).files(source.partitions())
    continued = run.continued or continue_kept_day(
        stored, source, log_days, caseloads, timezone, run.out_mode, has_ids, handed
    )
    parts, completed = run.parts, set()
    if continued is not None:  # the kept day's aggregates rebuilt from all its events
        parts = without_day(parts, continued.day) + [continued.aggregates]
        completed = {continued.day}
        run.notices.append(continued.notice)
    parts, scored, overlap = merge(stored, parts, completed)
    if key is not None and run.out_mode == "caseloads":  # kept for the next run
        stored.caseloads_now = (key, caseload_index(caseloads))
    # Otherwise the day the state will keep is read again and written meanwhile (not waited
    # for here).
    if kept is None:
        kept = keeping.submit(
            _keep_last_day, stored, source, parts, scored, continued, has_ids, handover
        )
    if handover is not None:  # every reader of the handed files has its events by now
        kept.add_done_callback(lambda _: handover[1].cleanup())
    keeping.shutdown(wait=False)
    # Baselines of stored days are needed only to fit a model on them.
    refit = uses_model and not _stored_model_usable(stored, len(scored))
    table = assemble(
        parts,
        caseloads,
        timezone,
        run.notices + overlap,
        has_caseload_data=run.out_mode is not None,
        first_day=stored.first_day,
        baseline_days=None if refit else scored,
        summary=stored.summary,
        carry=True,  # the state stores each window's novelty counts for the next night
        judged=stored.judged,  # and the accumulation's terms of its last days
        hours=stored.hours,  # and each account's summed hours before its last day
    )
    attach(
        table,
        source if continued is None else ContinuedSource(source, continued.day, continued.events),
        run,
    )
    say(f"{len(scored)} new day(s) to score against {stored.day_events().size} stored day(s)")
    return Prepared(table, list(table.notices), scored, stored, parts, continued, has_ids, kept)


def _address_allowlisted_windows(
    prepared: Prepared, ruleset: RuleSet, windows: np.ndarray, replay: Replay
) -> np.ndarray:
    """Which of ``windows`` had every event from an allowlisted network (re-read events)."""
    n_windows = len(prepared.features.table)
    events = replay.frame
    if not ruleset.allowlist.networks or "src_ip" not in events or len(events) == 0:
        return np.zeros(len(windows), dtype=bool)
    ip = events["src_ip"]
    allowed_category = ruleset.allowlist.allows_address(ip.cat.categories.astype(str))
    codes = ip.cat.codes.to_numpy()
    allowed = np.where(
        codes >= 0,
        allowed_category[np.maximum(codes, 0)] if len(allowed_category) else False,
        False,
    )
    window = replay.counts.window
    outside = np.bincount(window[~allowed], minlength=n_windows)
    return outside[windows] == 0


def replay_groups(table: pd.DataFrame, windows: np.ndarray) -> list[np.ndarray]:
    """``windows`` (table rows) cut between days into groups of about ``REPLAY_READ_EVENTS`` events.

    A group's events are re-read together; whole days keep each row group of a
    time-ordered log read by as few groups as possible.
    """
    days = table["_day"].to_numpy()[windows]
    order = np.argsort(days, kind="stable")
    days, sizes = days[order], table["events"].to_numpy()[windows][order]
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    per_day = np.add.reduceat(sizes.astype(np.int64), starts)
    group_of_day = (np.cumsum(per_day) - per_day) // max(REPLAY_READ_EVENTS, 1)
    group = np.repeat(group_of_day, np.diff(np.r_[starts, len(days)]))
    cuts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return [np.sort(part) for part in np.split(windows[order], cuts[1:])]


def detect(
    prepared: Prepared,
    rules: str | Path | RuleSet | None = "default",
    mode: str = "both",
    model: str | Path | WindowModel | None = None,
    consume: bool = False,
) -> pd.DataFrame:
    """Alerts for a prepared log, from a rule set, the model, or both (``mode``).

    ``model`` is a fitted :class:`WindowModel` or a file saved by ``detector fit``;
    without one, the model is fitted on this log's own windows. ``consume``:
    ``prepared`` is not detected on again, so what only other candidates would
    need is freed on the way (the internal numbers of windows that are not candidates).
    """
    if mode not in MODES:
        raise DetectorError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    table = prepared.features.table
    if len(table) == 0:
        return empty_alerts()
    use_rules = mode in ("rules", "both") and rules is not None
    use_model = mode in ("model", "both")

    scoring = np.arange(len(table))
    if prepared.scored_days is not None:  # stored days were scored by earlier runs
        days = table["_day"].to_numpy() + prepared.features.first_day
        scoring = np.flatnonzero(np.isin(days, np.fromiter(prepared.scored_days, dtype=np.int64)))
    if use_model and model is None and len(table) < MIN_WINDOWS_TO_FIT:
        prepared.notices.append(
            f"only {len(table)} account-days: too few to fit the model on this log, rules only"
            " (fit one on a longer log with `detector fit` and pass --model)"
        )
        use_model = False
    ruleset = None
    if use_rules:
        ruleset = rules if isinstance(rules, RuleSet) else load_ruleset(rules)
    aside = None
    if consume:
        _forget_caseload_index(prepared.features)
        if len(table) >= SET_ASIDE_FROM_WINDOWS:
            aside = _Aside(prepared.features)
    try:
        windows, fired, fitted, scores, flags = _candidates(
            prepared, table, ruleset, scoring, model, use_model
        )
        if consume:
            _keep_candidates(prepared.features, windows, aside)
    finally:
        if aside is not None:
            aside.close()
    if len(windows) == 0:
        return empty_alerts()
    conditions = {rule.id: rule.evaluate for rule in ruleset.rules} if ruleset is not None else {}
    if fitted is not None:
        conditions["model"] = fitted.flags
    windows, times = _replay_candidates(prepared, ruleset, fired, flags, windows, conditions)
    if len(windows) == 0:
        return empty_alerts()
    fired = fired.iloc[windows].reset_index(drop=True)
    if scores is not None:
        _score_unscored(fitted, table, scores, windows)
    drivers = fitted.drivers(table.iloc[windows]) if fitted is not None else None
    return build_alerts(
        prepared.features,
        windows,
        fired,
        times,
        ruleset,
        scores[windows] if scores is not None else None,
        flags[windows] if flags is not None else None,
        drivers,
    )


def _candidates(
    prepared: Prepared,
    table: pd.DataFrame,
    ruleset: RuleSet | None,
    scoring: np.ndarray,
    model: str | Path | WindowModel | None,
    use_model: bool,
) -> tuple[np.ndarray, pd.DataFrame, WindowModel | None, np.ndarray | None, np.ndarray | None]:
    """(candidate windows, rules fired, the model, its scores, its flags): the rules and
    the model over the whole table."""
    fired = pd.DataFrame(index=table.index)
    scores = flags = fitted = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The model is fitted while the rules are checked: both have stretches on one core.
        modelling = pool.submit(_model_scores, model, table, scoring) if use_model else None
        if ruleset is not None:
            fired = ruleset.evaluate(table)
            fired.loc[ruleset.allowlist.allows_account(table["account_id"].to_numpy()), :] = False
        if modelling is not None:
            fitted, scores = modelling.result()
            flags = scores >= fitted.threshold_
    candidate = (
        fired.any(axis=1).to_numpy(copy=True) if len(fired.columns) else np.zeros(len(table), bool)
    )
    if flags is not None:
        candidate |= flags
    if prepared.scored_days is not None:
        in_scope = np.zeros(len(table), dtype=bool)
        in_scope[scoring] = True
        candidate &= in_scope
    return np.flatnonzero(candidate), fired, fitted, scores, flags


def _forget_caseload_index(features: FeatureTable) -> None:
    """Drop the kernel's index of the whole caseload table (about 0.35 GB at 100M events)
    while the rules and the model run: the replay indexes its candidates' rows only."""
    if features.caseloads is not None and len(features.caseloads):
        forget_caseload_index()
    _give_back()


def _give_back() -> None:
    """Give freed memory back to the system: the C library's heap, and the blocks Arrow's
    allocator keeps from threads that have ended (assembly's, a replay's readers)."""
    release_memory()
    pa.default_memory_pool().release_unused()


class _Aside:
    """A large table's internal block and caseload table, written to a temporary directory
    while the rules and the model run, so that their memory goes to the model's matrix.

    Both are written as they are (raw float64 rows, Arrow IPC batches) and read back by
    :func:`_keep_candidates` for the candidates only, a row or a batch at a time.
    """

    def __init__(self, features: FeatureTable):
        self._folder = tempfile.TemporaryDirectory(prefix="logsentinel-detect-")
        folder = Path(self._folder.name)
        internal = features.internal
        self.internal = None  # (names, rows held or None, shape, file)
        if internal.block.size:
            path = folder / "internal.bin"
            np.ascontiguousarray(internal.block).tofile(path)
            self.internal = (internal.names, internal.rows, internal.block.shape, path)
            features.internal = Internal(internal.names, np.zeros((len(internal.names), 0)), None)
        self.caseloads = None  # (dtypes, file)
        caseloads = features.caseloads
        # A table read from a file; a state's stored index is mapped from its files already.
        if isinstance(caseloads, pd.DataFrame) and len(caseloads):
            path = folder / "caseloads.arrow"
            table = pa.Table.from_pandas(caseloads, preserve_index=False)
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                for batch in table.to_batches(max_chunksize=CASELOAD_BATCH_ROWS):
                    out.write_batch(batch)
            self.caseloads = (caseloads.dtypes.to_dict(), path)
            features.caseloads = None  # read back for the candidates
        del internal, caseloads
        _give_back()

    def internal_of(self, windows: np.ndarray) -> Internal | None:
        """The internal numbers of the given table rows (ascending), read back row by row."""
        if self.internal is None:
            return None
        names, rows, (n_names, n_columns), path = self.internal
        columns = windows if rows is None else np.searchsorted(rows, windows)
        block = np.empty((n_names, len(windows)))
        for i in range(n_names):
            line = np.fromfile(path, dtype=np.float64, count=n_columns, offset=i * n_columns * 8)
            block[i] = line[columns]
        return Internal(names, block, windows)

    def caseloads_of(self, accounts: pa.Array | None) -> pd.DataFrame:
        """The caseload rows of the given accounts (None: all), in table order, read back
        a batch at a time."""
        dtypes, path = self.caseloads
        kept = []
        with pa.OSFile(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                if accounts is not None:
                    rows = np.flatnonzero(lookup(batch.column("account_id"), accounts) >= 0)
                    batch = batch.take(pa.array(rows))
                kept.append(batch)
            schema = reader.schema
        frame = pa.Table.from_batches(kept, schema).to_pandas()
        return frame.astype(dtypes)

    def close(self) -> None:
        self._folder.cleanup()


def _keep_candidates(features: FeatureTable, windows: np.ndarray, aside: _Aside | None) -> None:
    """Free what only other windows' replay would read: their internal numbers, and the
    caseload rows of other accounts (an event's read is in its own account's caseload or
    not, whoever else follows the record). What ``aside`` holds is read back for them."""
    windows = np.unique(np.asarray(windows, dtype=np.int64))
    internal = aside.internal_of(windows) if aside is not None else None
    if internal is not None:
        features.internal = internal
    else:
        features.internal.keep(windows)
    accounts = pa.array(np.unique(features.table["account_id"].to_numpy()[windows]).astype(str))
    if aside is not None and aside.caseloads is not None:
        features.caseloads = aside.caseloads_of(accounts)
        if not len(features.caseloads):  # an empty table is no caseload table to the kernel
            features.caseloads = aside.caseloads_of(None)
    caseloads = features.caseloads
    if caseloads is None or not len(caseloads):
        return
    kept = caseloads_of(caseloads, accounts)
    if kept is None:  # an empty table is no caseload table to the kernel: keep it whole
        return
    features.caseloads = kept
    del caseloads, kept
    if features.out_mode == "caseloads":
        caseload_index(features.caseloads)  # built now for the few rows; the whole one goes
    _give_back()


def _replay_candidates(
    prepared: Prepared,
    ruleset: RuleSet | None,
    fired: pd.DataFrame,
    flags: np.ndarray | None,
    windows: np.ndarray,
    conditions: dict[str, Callable],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the candidate windows left once allowlisted networks are dropped, the instants
    each condition first held in them).

    Only the candidate windows' events are read again, a group of days at a time:
    memory holds one group's events, not every candidate's. Rules that an allowlisted
    network silences are cleared in ``fired``.
    """
    kept, found = [], []
    for group in replay_groups(prepared.features.table, windows):
        replay = replay_events(prepared.features, group)
        if ruleset is not None and ruleset.allowlist.networks:
            allowed = _address_allowlisted_windows(prepared, ruleset, group, replay)
            fired.iloc[group[allowed], :] = False
            keep = fired.iloc[group].any(axis=1).to_numpy(copy=True)  # pandas 3: read-only
            if flags is not None:
                keep |= flags[group]
            group = group[keep]
            if len(group) == 0:
                continue
        # An instant is wanted only where it is used: a rule's where it fired, the model's
        # where it flagged.
        wanted = {rule: fired[rule].to_numpy()[group] for rule in fired.columns}
        if flags is not None:
            wanted["model"] = flags[group]
        found.append(
            first_hold_times(
                prepared.features,
                group,
                conditions,
                sparse=frozenset({"model"}),
                replay=replay,
                wanted=wanted,
            )
        )
        kept.append(group)
        del replay
        _give_back()
    if not kept:
        return np.zeros(0, dtype=np.int64), {}
    windows = np.concatenate(kept)
    order = np.argsort(windows, kind="stable")  # table order, as one group would give
    times = {name: np.concatenate([f[name] for f in found])[order] for name in conditions}
    return windows[order], times


def _score_unscored(
    fitted: WindowModel, table: pd.DataFrame, scores: np.ndarray, windows: np.ndarray
) -> None:
    """Score the alerted windows that fitting left unscored (NaN: proven below the
    threshold, e.g. alerted by a rule only): each row's score is its own, as in fitting."""
    missing = windows[np.isnan(scores[windows])]
    if len(missing):
        scores[missing] = fitted.score(table, rows=missing)


def _model_scores(
    model: str | Path | WindowModel | None, table: pd.DataFrame, scoring: np.ndarray
) -> tuple[WindowModel, np.ndarray]:
    """The model and every window's score (0 outside ``scoring``, the rows that may alert;
    NaN where the score is proven below the model's threshold)."""
    fitted = _resolve_model(model, table)
    if model is None:  # fitted on this very table: its training scores are its scores
        return fitted, fitted.training_scores_
    scores = np.zeros(len(table))  # only the windows that may alert are scored
    scores[scoring] = fitted.score(table, floor=fitted.threshold_, rows=scoring)
    return fitted, scores


def _resolve_model(model: str | Path | WindowModel | None, table: pd.DataFrame) -> WindowModel:
    if isinstance(model, WindowModel):
        return model
    if model is not None:
        return WindowModel.load(model)
    return WindowModel().fit(table, all_scores=False)  # the threshold needs the high ones


def fit_model(
    log: str | Path | pd.DataFrame,
    caseloads: str | Path | pd.DataFrame | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    progress: Progress | None = None,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
) -> WindowModel:
    """Fit the window model on a log (e.g. a known-clean period) for later ``--model`` use."""
    prepared = prepare(log, caseloads, timezone, progress, engine, workers, scheduler)
    return WindowModel().fit(prepared.features.table)


def score_log(
    log: str | Path | pd.DataFrame,
    caseloads: str | Path | pd.DataFrame | None = None,
    rules: str | Path | RuleSet | None = "default",
    mode: str = "both",
    model: str | Path | WindowModel | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    progress: Progress | None = None,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    state: str | Path | None = None,
    keep_days: int | None = None,
) -> ScoreResult:
    """Score a log: the main job of ``detector score``.

    With ``state``, only the days not yet in the state directory are scored,
    against the stored history, and the state is then updated atomically
    (keeping the last ``keep_days`` days' windows, the older ones summarised).
    """
    _give_back_large_blocks()
    with state_lock(state):  # one run at a time on a state (see engine.lock)
        prepared = prepare(
            log,
            caseloads,
            timezone,
            progress,
            engine,
            workers,
            scheduler,
            state,
            uses_model=mode != "rules" and model is None,
        )
        if progress:
            progress(f"detecting ({mode})")
        fitted = None
        if state is not None and model is None and mode != "rules":
            model, fitted = _state_model(prepared)
        alerts = detect(prepared, rules, mode, model, consume=True)
        table = prepared.features.table
        # Who created or granted whom: gathered by the kernel; with a state, since it began,
        # and the earlier runs' alerts link this run's as one run over the whole log would.
        links, earlier = prepared.features.links, None
        if state is not None:
            links = _all_links(prepared.state.links, links)
            earlier = _alerted_before(prepared)
        alerts, incidents = group_incidents(alerts, table, links, earlier)
        if state is not None:
            alerted = _alerted(alerts, table, earlier)
            _save_state(prepared, fitted, progress, links, alerted, keep_days)
        features = prepared.features.features
        if prepared.scored_days is not None:  # the stored days were given by earlier runs
            days = table["_day"].to_numpy() + prepared.features.first_day
            features = features[np.isin(days, np.fromiter(prepared.scored_days, dtype=np.int64))]
        return ScoreResult(
            alerts=alerts,
            incidents=incidents,
            features=features,
            rejects=prepared.rejects,
            notices=prepared.notices,
            events=prepared.features.n_events,
            accounts=prepared.features.accounts
            or (int(table["account_id"].nunique()) if len(table) else 0),
        )


def _give_back_large_blocks() -> None:
    """Have the C library map blocks of ``OWN_MAPPING_BYTES`` and more on their own, and
    unmap them when freed.

    glibc otherwise raises that threshold as large blocks are freed and serves
    later ones from a heap it keeps: on 100M events, assembly's and detection's
    temporaries (tens of megabytes each) left about 0.5 GB of freed heap counted
    in the run's peak. Costs a page fault per page of each such block (about
    1 ms per 15 MB). The local engine's workers set their own policy. A no-op
    where the C library is not glibc.
    """
    malloc_policy(OWN_MAPPING_BYTES)


def _state_model(
    prepared: Prepared,
) -> tuple[Path | WindowModel | None, WindowModel | None]:
    """(the model to score with, or its file; the one fitted now to store) for a run with
    --state.

    The stored model is reused while it was fitted on a full baseline and is
    younger than a week of new days; otherwise one is fitted on all stored days.
    """
    stored = prepared.state
    table = prepared.features.table
    if _stored_model_usable(stored, len(prepared.scored_days)):
        # Its file: ``detect`` loads it in the thread that scores, beside the rules.
        return stored.model_path, None
    if len(table) < MIN_WINDOWS_TO_FIT:
        return None, None
    fitted = WindowModel().fit(table, all_scores=False)  # only its threshold is kept
    return fitted, fitted


def _stored_model_usable(stored: State, new_days: int) -> bool:
    """A stored model fitted on a full baseline, less than a week of new days ago."""
    return (
        stored.model_path is not None
        and stored.model_days >= FULL_HISTORY_DAYS
        and stored.model_age + new_days <= REFIT_AFTER_DAYS
    )


def _all_links(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Creation links of the state and of this log, each once."""
    frames = [f for f in (stored, new) if len(f)]
    if not frames:
        return new
    links = pd.concat(frames, ignore_index=True)
    links["timestamp"] = pd.to_datetime(links["timestamp"], utc=True)
    # Equal rows have equal instants: only the rows sharing theirs with another are
    # compared whole (a state's 590k links: 0.3 s for all, a few ms for those).
    shared = np.flatnonzero(links["timestamp"].duplicated(keep=False).to_numpy())
    if not len(shared):
        return links
    repeated = links.iloc[shared].duplicated().to_numpy()
    keep = np.ones(len(links), dtype=bool)
    keep[shared[repeated]] = False
    return links[keep].reset_index(drop=True)


def _day_numbers(days: pd.Series) -> np.ndarray:
    return pd.to_datetime(days).to_numpy().astype("datetime64[D]").astype(np.int64)


def _alerted_before(prepared: Prepared) -> pd.DataFrame:
    """The stored alerts, but those of the days this run scores again."""
    alerted = prepared.state.alerted
    if not len(alerted):
        return alerted
    scored = np.fromiter(prepared.scored_days, dtype=np.int64)
    return alerted[~np.isin(_day_numbers(alerted["day"]), scored)].reset_index(drop=True)


def _alerted(alerts: pd.DataFrame, table: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """What the state keeps of the alerts: the earlier runs' and this run's windows."""
    columns = ["account_id", "window_start", "window_end", "detected_at"]
    now = alerts[columns].merge(
        table[["account_id", "window_start", "day"]], on=["account_id", "window_start"], how="left"
    )
    frames = [f for f in (earlier, now) if len(f)]
    if not frames:
        return earlier
    return pd.concat(frames, ignore_index=True)


def _stored_index(state: str | Path | None, caseload_file: Any) -> tuple[str | None, Any]:
    """(the caseload file's hash, the index a state at ``state`` keeps for it with its
    version, or None): run in a thread beside :func:`load_state`."""
    key = caseload_key(caseload_file)
    return key, None if state is None else caseload_index_at(state, key)


def _new_last_day(stored: State, log_days: set[int]) -> bool:
    """Is the log's last day later than every stored day? (Then it is scored, and it is
    the day the state keeps next.)"""
    if not log_days:
        return False
    windows = stored.history.windows if stored.history is not None else None
    if windows is None or not len(windows):
        return True
    return max(log_days) > int(windows["day"].max())


def _keep_last_day(
    stored: State,
    source,
    parts: list[Aggregates],
    scored: set[int],
    continued: Continuation | None,
    has_ids: bool,
    handover: tuple[KeepDay, Any] | None = None,
) -> Kept | None:
    """The events of the last stored day written for the state, for a log that continues
    it (None: keep the stored ones). Run in a thread while the table is assembled and
    scored. A day of this log: the events its partitions wrote (``handover``, the local
    engine), else read and validated again (seconds on a national day). The caller
    removes the handover folder once every reader of it is done."""
    days = [int(p.windows["day"].max()) for p in parts if len(p.windows)]
    if not days:
        return None
    last = max(days)
    if continued is not None and continued.day == last:
        events, ids = continued.events, has_ids and stored.kept_ids
    elif last in scored:  # the day came with this log
        events, ids = None, has_ids
        if handover is not None and handover[0].day == last:
            events = handed_kept(handover[0].files(source.partitions()), has_ids)
        if events is None:
            events = once_each(read_day(source, last), has_ids)
    else:
        return None
    return Kept(last, None, ids, write_kept(events, kept_scratch(stored)))


def _save_state(
    prepared: Prepared,
    fitted: WindowModel | None,
    progress: Progress | None,
    links: pd.DataFrame,
    alerted: pd.DataFrame,
    keep_days: int | None = None,
) -> None:
    stored = prepared.state
    days = int(prepared.features.table["_day"].nunique())
    if fitted is not None:
        model_days, model_age = days, 0
    else:
        model_days, model_age = stored.model_days, stored.model_age + len(prepared.scored_days)
    # The aggregates are not stacked: the stored history's millions of windows are mostly
    # linked, not written again (state.save_state takes the rows it writes).
    history = [p for p in prepared.history if len(p.windows)]
    carried = prepared.features.carried
    bounds = np.cumsum([0] + [len(p.windows) for p in history])
    if carried and all(len(v) == bounds[-1] for v in carried.values()):
        for name, counts in carried.items():  # in the stacked windows' order
            for part, start, end in zip(history, bounds[:-1], bounds[1:], strict=True):
                part.windows[CARRIED[name]] = counts[start:end].astype(np.int32)
    if progress:
        progress("saving the state")
    kept = prepared.kept.result() if prepared.kept is not None else None
    path = save_state(
        stored,
        history,
        prepared.features.first_day,
        fitted,
        model_days,
        model_age,
        kept=kept,
        links=links,
        alerted=alerted,
        keep_days=keep_days,
        scored=prepared.scored_days,
        judged=prepared.features.judged,
        hours=prepared.features.hours,
    )
    if progress:
        progress(f"state updated: {path}")
