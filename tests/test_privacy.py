"""--pseudonymise: no raw account id, address or record id in any output; stable per key."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.privacy import KEY_ENV, Pseudonymiser, PseudonymKeyError, load_key

KEY = "a-test-key-of-enough-bytes"
OTHER_KEY = "another-key-just-as-long!!"
PSEUDONYM = re.compile(r"^(acct|ip|rec)-[0-9a-f]{16}$")


# --------------------------------------------------------------------------- the key


def test_no_key_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = CliRunner().invoke(main, ["score", str(tmp_path / "log.parquet"), "--pseudonymise"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --pseudonymise needs a key: --pseudonym-key-file FILE or $LOGSENTINEL_PSEUDONYM_KEY\n"
    )


def test_key_from_a_file_wins_over_the_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert load_key(key_file, environ={KEY_ENV: OTHER_KEY}) == KEY.encode()
    assert load_key(None, environ={KEY_ENV: OTHER_KEY}) == OTHER_KEY.encode()


def test_a_short_key_is_refused(tmp_path):
    with pytest.raises(PseudonymKeyError) as caught:
        load_key(None, environ={KEY_ENV: "short"})
    assert str(caught.value) == (
        "$LOGSENTINEL_PSEUDONYM_KEY holds 5 bytes; a pseudonym key needs at least 16"
    )


def test_a_missing_key_file_is_refused(tmp_path):
    with pytest.raises(PseudonymKeyError) as caught:
        load_key(tmp_path / "nope")
    assert str(caught.value) == (
        f"cannot read pseudonym key file {tmp_path / 'nope'}: No such file or directory"
    )


# --------------------------------------------------------------------------- the columns


def test_every_column_type_gives_the_same_pseudonyms():
    hide = Pseudonymiser(KEY.encode())
    values = ["u1", "u2", None, "u1"]
    plain = hide.series(pd.Series(values, dtype=object), "acct").tolist()
    category = hide.series(pd.Series(values, dtype="category"), "acct")
    text = hide.series(pd.Series(values, dtype="string"), "acct")
    arrow = hide.arrow(pa.chunked_array([values[:2], values[2:]]), "acct").to_pylist()
    assert isinstance(category.dtype, pd.CategoricalDtype)
    assert plain[0] == plain[3] == category.iloc[0] == text.iloc[0] == arrow[0] == arrow[3]
    assert plain[1] == arrow[1] != plain[0]
    assert pd.isna(plain[2]) and pd.isna(category.iloc[2]) and arrow[2] is None
    assert PSEUDONYM.match(plain[0])
    assert plain[0] == hide.pseudonym("u1", "acct")


def test_a_pseudonym_is_the_start_of_hmac_sha256():
    import hashlib
    import hmac

    digest = hmac.new(KEY.encode(), b"acct\0u1", hashlib.sha256).hexdigest()
    assert Pseudonymiser(KEY.encode()).pseudonym("u1", "acct") == "acct-" + digest[:16]


def test_pseudonyms_depend_on_the_key_and_the_kind():
    one, two = Pseudonymiser(KEY.encode()), Pseudonymiser(OTHER_KEY.encode())
    assert one.pseudonym("u1", "acct") == Pseudonymiser(KEY.encode()).pseudonym("u1", "acct")
    assert one.pseudonym("u1", "acct") != two.pseudonym("u1", "acct")
    assert one.pseudonym("u1", "acct")[5:] != one.pseudonym("u1", "rec")[4:]


def test_a_created_account_keeps_one_pseudonym_in_both_columns():
    hide = Pseudonymiser(KEY.encode())
    frame = pd.DataFrame(
        {"account_id": ["m1", "new1"], "target_account_id": ["new1", None], "other": [1, 2]}
    )
    out = hide.frame(frame)
    assert out.loc[0, "target_account_id"] == out.loc[1, "account_id"]
    assert out["other"].tolist() == [1, 2]
    assert frame.loc[0, "account_id"] == "m1"  # the input is left alone


def test_originals_finds_the_accounts_behind_pseudonyms():
    hide = Pseudonymiser(KEY.encode())
    log_accounts = pa.chunked_array([["u1", "u2", "u3", None, "u2"]])
    wanted = [hide.pseudonym("u2", "acct"), hide.pseudonym("zz", "acct")]
    assert hide.originals(wanted, log_accounts, "acct") == {wanted[0]: "u2"}


# --------------------------------------------------------------------------- every output file


@pytest.fixture(scope="module")
def log_with_rejects(small_log, tmp_path_factory) -> Path:
    """The small log, with a few rows that will be rejected, and its caseloads beside it."""
    folder = tmp_path_factory.mktemp("private")
    frame = pd.read_parquet(small_log)
    frame.loc[frame.index[::5000], "timestamp"] = pd.NaT
    log = folder / "logs.parquet"
    frame.to_parquet(log)
    caseloads = small_log.with_name("logs.caseloads.parquet")
    (folder / "logs.caseloads.parquet").write_bytes(caseloads.read_bytes())
    return log


def _raw_identifiers(log: Path) -> set[str]:
    frame = pd.read_parquet(log)
    found: set[str] = set()
    for column in ("account_id", "target_account_id", "src_ip", "record_id"):
        found |= set(frame[column].dropna().astype(str))
    return found


def _texts(path: Path) -> list[str]:
    """Every string a file holds: the cells of a Parquet file, else its text."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return [str(v) for c in frame.columns for v in frame[c].dropna().tolist()] + list(
            frame.columns
        )
    return [path.read_text(encoding="utf-8")]


def _leaks(path: Path, raw: set[str]) -> set[str]:
    tokens: set[str] = set()
    for text in _texts(path):
        tokens |= set(re.findall(r"[A-Za-z0-9_.:-]+", text))
    return tokens & raw


def _score(log: Path, out: Path, key: str, *extra: str):
    return CliRunner(env={KEY_ENV: key}).invoke(
        main,
        [
            "score",
            str(log),
            "--out",
            str(out),
            "--features-out",
            str(out.with_name("features.parquet")),
            "--pseudonymise",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def private_run(log_with_rejects, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run1") / "alerts.parquet"
    result = _score(log_with_rejects, out, KEY)
    assert result.exit_code == 0, result.output
    return out


def test_no_raw_identifier_in_any_score_output(log_with_rejects, private_run):
    raw = _raw_identifiers(log_with_rejects)
    files = sorted(private_run.parent.iterdir())
    assert [p.name for p in files] == [
        "alerts.incidents.parquet",
        "alerts.parquet",
        "alerts.rejects.parquet",
        "features.parquet",
    ]
    incidents = pd.read_parquet(private_run.with_name("alerts.incidents.parquet"))
    assert len(incidents) > 0
    # Incident ids hash an account id: keyed too, or a guessed account could be checked.
    assert incidents["incident_id"].str.fullmatch("inc-[0-9a-f]{16}").all()
    assert all(PSEUDONYM.match(a) for accounts in incidents["accounts"] for a in accounts)
    alerts = pd.read_parquet(private_run)
    assert len(alerts) > 0
    assert alerts["account_id"].map(lambda v: bool(PSEUDONYM.match(v))).all()
    rejects = pd.read_parquet(private_run.with_name("alerts.rejects.parquet"))
    assert rejects["account_id"].dropna().str.match(PSEUDONYM).all()
    for path in files:
        assert _leaks(path, raw) == set(), path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ocsf"])
def test_no_raw_identifier_in_text_alerts(log_with_rejects, tmp_path, fmt):
    out = tmp_path / f"alerts.{fmt}"
    result = _score(log_with_rejects, out, KEY, "--format", fmt, "--mode", "rules")
    assert result.exit_code == 0, result.output
    assert _leaks(out, _raw_identifiers(log_with_rejects)) == set()
    assert "acct-" in out.read_text()
    # The terminal table shows the pseudonyms too.
    assert _leaks_text(result.output, _raw_identifiers(log_with_rejects)) == set()


def _leaks_text(text: str, raw: set[str]) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_.:-]+", text)) & raw


def test_pseudonyms_are_stable_across_runs_and_change_with_the_key(
    log_with_rejects, private_run, tmp_path
):
    again = tmp_path / "again" / "alerts.parquet"
    assert _score(log_with_rejects, again, KEY).exit_code == 0
    other = tmp_path / "other" / "alerts.parquet"
    assert _score(log_with_rejects, other, OTHER_KEY).exit_code == 0
    first = pd.read_parquet(private_run)["account_id"]
    assert pd.read_parquet(again)["account_id"].tolist() == first.tolist()
    assert set(pd.read_parquet(other)["account_id"]).isdisjoint(first)


def test_report_from_raw_alerts_shows_no_raw_identifier(log_with_rejects, tmp_path):
    alerts = tmp_path / "alerts.parquet"
    raw_run = CliRunner().invoke(
        main, ["score", str(log_with_rejects), "--out", str(alerts), "--mode", "rules"]
    )
    assert raw_run.exit_code == 0, raw_run.output
    out = tmp_path / "report.html"
    result = CliRunner(env={KEY_ENV: KEY}).invoke(
        main,
        [
            "report",
            str(alerts),
            "--log",
            str(log_with_rejects),
            "--out",
            str(out),
            "--pseudonymise",
            "--max-alerts",
            "3",  # a few detailed sections suffice; the summary lists every alert
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert _leaks(out, _raw_identifiers(log_with_rejects)) == set()
    assert "acct-" in html and "ip-" in html  # the addresses table is there, pseudonymised


def test_report_from_pseudonymised_alerts_finds_their_events(
    log_with_rejects, private_run, tmp_path
):
    out = tmp_path / "report.html"
    result = CliRunner(env={KEY_ENV: KEY}).invoke(
        main,
        [
            "report",
            str(private_run),
            "--log",
            str(log_with_rejects),
            "--out",
            str(out),
            "--pseudonymise",
            "--max-alerts",
            "3",  # a few detailed sections suffice; the summary lists every alert
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert _leaks(out, _raw_identifiers(log_with_rejects)) == set()
    # Events were matched by pseudonym: the sections list the addresses used.
    assert "Addresses used up to detection" in html
    first = pd.read_parquet(private_run)["account_id"].iloc[0]
    assert first in html


def test_bench_outputs_hold_no_raw_account(tmp_path):
    """The bench's tables are per scenario and rule: no account column reaches them."""
    out = tmp_path / "bench.csv"
    result = CliRunner(env={KEY_ENV: KEY}).invoke(
        main,
        [
            "bench",
            "--rules",
            "default",
            "--scenario",
            "kairos_infostealer",
            "--seeds",
            "1",
            "--accounts",
            "150",
            "--days",
            "14",
            "--mode",
            "rules",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "bench.png"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--pseudonymise",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert rows["detected"].sum() >= 1
    logs = list((tmp_path / "cache").rglob("logs.parquet"))
    raw = _raw_identifiers(logs[0])
    for path in (out, tmp_path / "bench.rules.csv"):
        assert _leaks(path, raw) == set(), path
