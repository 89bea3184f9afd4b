"""A model file is data: loading one never runs code, and a malformed one is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from click.testing import CliRunner

from detector.cli import main
from detector.errors import ModelError
from detector.model import MODEL_FEATURES, MODEL_FORMAT, WindowModel


@pytest.fixture(scope="module")
def fitted() -> WindowModel:
    """A small model fitted on random feature rows (the structure is what matters here)."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.gamma(2.0, 3.0, 300) for name in MODEL_FEATURES})
    return WindowModel(n_estimators=10).fit(table)


def _state(model: WindowModel, **changes) -> dict:
    state = {
        "format": MODEL_FORMAT,
        "forest": model.forest_,
        "features": list(model.features_),
        "threshold": model.threshold_,
        "centre": model.centre_,
        "params": {
            name: getattr(model, name)
            for name in ("n_estimators", "max_samples", "alert_rate", "min_score", "random_state")
        },
    }
    state.update(changes)
    return {k: v for k, v in state.items() if v is not _DROP}


_DROP = object()


def _evil_forest(model: WindowModel, marker: Path):
    """The issue's crafted 'forest': a Pipeline whose steps end in exec of embedded code.

    numpy.full_like fills the input with the code, numpy.sum joins it into one
    string, numpy.testing's runstring exec()s it; the real forest follows.
    """
    from numpy.testing._private.utils import runstring
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    code = f"import pathlib;pathlib.Path({str(marker)!r}).touch()\n"
    return Pipeline(
        [
            ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": "O"})),
            ("join", FunctionTransformer(np.sum)),
            ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
            ("forest", model.forest_),
        ]
    )


def test_the_crafted_pipeline_really_runs_its_code(fitted, tmp_path):
    """The reproducer is live: called directly, the pipeline creates the marker file."""
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError):  # runstring returns None, which the forest then rejects
        _evil_forest(fitted, marker).score_samples(np.zeros((2, len(MODEL_FEATURES))))
    assert marker.exists()


def test_score_with_a_crafted_model_runs_no_code(fitted, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.skops"
    sio.dump(_state(fitted, forest=_evil_forest(fitted, marker)), evil)
    log = tmp_path / "log.parquet"
    pd.DataFrame(
        {"timestamp": ["2024-03-25T08:00:00Z"], "account_id": ["a1"], "action": ["login"]}
    ).to_parquet(log)
    result = CliRunner().invoke(main, ["score", str(log), "--model", str(evil)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {evil}: refusing to load type sklearn.pipeline.Pipeline (ObjectNode)\n"
    )
    assert not marker.exists()


def test_a_saved_model_round_trips(fitted, tmp_path):
    path = tmp_path / "model.skops"
    fitted.save(path)
    loaded = WindowModel.load(path)
    assert loaded.features_ == fitted.features_
    assert loaded.threshold_ == fitted.threshold_
    rows = pd.DataFrame({name: [1.0, 50.0] for name in MODEL_FEATURES})
    np.testing.assert_allclose(loaded.score(rows), fitted.score(rows))


def test_a_saved_model_needs_only_the_listed_untrusted_types(fitted, tmp_path):
    from detector.model import SKOPS_TRUSTED

    path = tmp_path / "model.skops"
    fitted.save(path)
    assert set(sio.get_untrusted_types(file=path)) <= SKOPS_TRUSTED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"features": list(MODEL_FEATURES[:-1])},
            f"the model's feature list ({len(MODEL_FEATURES) - 1} features) disagrees with its "
            f"forest ({len(MODEL_FEATURES)} features)",
        ),
        ({"params": _DROP}, "model file has no params"),
        ({"threshold": float("nan")}, "the model's threshold nan is not a finite number"),
        ({"threshold": "0.7"}, "the model's threshold '0.7' is not a finite number"),
        (
            {"features": ["events", "no_such_feature"]},
            "model uses features this version does not know: ['no_such_feature']",
        ),
        (
            {"params": {"n_estimators": 10}},
            "the model's params are not n_estimators, max_samples, alert_rate, min_score, random_state numbers",
        ),
        (
            {"forest": {"not": "a forest"}},
            "the model's forest is a dict, not a fitted IsolationForest",
        ),
        ({"centre": np.zeros(3)}, "the model's feature centre does not match its features"),
    ],
    ids=[
        "features-vs-forest",
        "no-params",
        "nan-threshold",
        "text-threshold",
        "unknown-feature",
        "bad-params",
        "not-a-forest",
        "bad-centre",
    ],
)
def test_a_malformed_model_file_is_a_one_line_error(fitted, tmp_path, change, message):
    path = tmp_path / "bad.skops"
    sio.dump(_state(fitted, **change), path)
    with pytest.raises(ModelError) as caught:
        WindowModel.load(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_malformed_model_file_is_an_error_line_in_the_cli(fitted, tmp_path):
    path = tmp_path / "bad.skops"
    sio.dump(_state(fitted, features=list(MODEL_FEATURES[:-1])), path)
    log = tmp_path / "log.parquet"
    log.write_bytes(b"not even parquet: the model is checked first")
    result = CliRunner().invoke(main, ["score", str(log), "--model", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path}: the model's feature list ({len(MODEL_FEATURES) - 1} features) "
        f"disagrees with its forest ({len(MODEL_FEATURES)} features)\n"
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 not really a zip", b"\x80\x04\x95 a pickle renamed .skops"],
    ids=["empty", "broken-zip", "pickle"],
)
def test_a_file_that_is_no_model_is_refused(tmp_path, content):
    path = tmp_path / "m.skops"
    path.write_bytes(content)
    with pytest.raises(ModelError) as caught:
        WindowModel.load(path)
    assert str(caught.value) == f"{path} is not a model saved by `detector fit`"


def test_a_function_anywhere_in_the_file_is_refused(fitted, tmp_path):
    """Not only the forest: a function hidden in `params` is refused before loading too."""
    path = tmp_path / "m.skops"
    state = _state(fitted)
    state["params"] = dict(state["params"], hook=np.sum)
    sio.dump(state, path)
    with pytest.raises(ModelError) as caught:
        WindowModel.load(path)
    assert str(caught.value) == f"{path}: refusing to load type numpy.sum (FunctionNode)"
