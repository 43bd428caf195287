"""The stage runner and the filter transform, on a toy stage: skip when up to date, rerun on new inputs or
settings, clear what a rerun replaces, fail loudly on an incomplete manifest or a funnel that does not add up;
ApplyFilter's three outcomes and its counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from curate import reasons as R
from curate.config import load_config
from curate.errors import IntegrityError
from curate.io import ShardInfo, write_table_shard
from curate.pipelines.common import FAILED, REJECTED, ApplyFilter, CollectShards
from curate.pipelines.stage import Stage, WriteManifest
from curate.records import Rejected
from curate.tables import REJECT_SCHEMA

TOY = Stage("toy", "toy", sections=("extract",), upstream=(), clears=("toy", "rejects/toy-*"))


def _toy_build(out: str, inputs: list[str], digest: str, funnel: dict[str, Any], complete: bool = True) -> Any:
    """A graph that writes one table shard under OUT/toy and the manifest with the given funnel."""
    def describe(shards: list[ShardInfo]) -> dict[str, Any]:
        return {"funnel": funnel, **({} if complete else {"complete": False, "error": "toy: 3 left undecided"})}

    def build(p: beam.Pipeline) -> None:
        rows = [(f"{i:032x}", {"key": f"{i:032x}", "url": f"http://a/{i}", "stage": "toy", "reason": "x",
                               "detail": "", "occurrences": 1}) for i in range(len(inputs))]
        shards = (p | beam.Create([0]) | beam.Map(lambda _: write_table_shard(out, "toy", "toy", 0, 1, REJECT_SCHEMA, rows))
                  | CollectShards(out))
        _ = shards | beam.ParDo(WriteManifest(TOY, out, inputs, digest, describe))
    return build


def _run(out: str, inputs: list[str], shards: int = 8, **kwargs: Any) -> dict[str, Any]:
    config = load_config(None, {"extract.shards": shards})
    funnel = kwargs.pop("funnel", {"items": {"input": len(inputs), "kept": len(inputs), "rejected": {}, "failed": 0}})
    build = _toy_build(out, inputs, TOY.digest(out, config), funnel, kwargs.pop("complete", True))
    return TOY.run(out, config, [], inputs, build, **kwargs)


def test_a_stage_runs_once_then_skips_until_its_inputs_or_settings_change(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = _run(out, ["a", "b"])
    assert "skipped" not in first and first["stage"] == "toy" and first["complete"] is True
    assert first["tables"]["toy"][0]["rows"] == 2 and first["inputs"] == ["a", "b"]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["toy"]["items"]["kept"] == 2
    assert (tmp_path / "out" / "config.yaml").exists()

    stale = tmp_path / "out" / "rejects" / "toy-00000-of-00001.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    assert _run(out, ["a", "b"])["skipped"] is True
    assert stale.exists()  # a skipped stage touches nothing

    again = _run(out, ["a", "b", "c"])  # new inputs: rerun, and what the stage writes is cleared first
    assert "skipped" not in again and again["tables"]["toy"][0]["rows"] == 3 and not stale.exists()
    assert "skipped" not in _run(out, ["a", "b", "c"], shards=4)  # a setting of its config sections changed
    assert "skipped" not in _run(out, ["a", "b", "c"], shards=4, force=True)


def test_a_funnel_that_does_not_add_up_fails_the_stage(tmp_path: Path) -> None:
    funnel = {"items": {"input": 3, "kept": 1, "rejected": {"x": 1}, "failed": 0}}
    with pytest.raises(IntegrityError, match=r"toy items: 3 in, but kept \+ rejected \+ failed = 2"):
        _run(str(tmp_path / "out"), ["a"], funnel=funnel)
    assert not (tmp_path / "out" / "stats.json").exists()


def test_an_incomplete_manifest_fails_with_its_reason_and_is_never_skipped(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with pytest.raises(IntegrityError, match="toy: 3 left undecided"):
        _run(out, ["a"], complete=False)
    assert "skipped" not in _run(out, ["a"])


def _keep_short(word: str) -> str | Rejected:
    if word == "boom":
        raise ValueError("no rule for boom")
    return word if len(word) <= 4 else Rejected(word, f"http://w/{word}", "toy", "too_long", f"{len(word)} letters")


def test_apply_filter_keeps_rejects_and_turns_exceptions_into_dead_letters() -> None:
    with beam.Pipeline() as p:
        out = (p | beam.Create(["cat", "giraffe", "boom", "dog", "elephant"])
               | beam.ParDo(ApplyFilter("toy", _keep_short, lambda w: (w, f"http://w/{w}"))).with_outputs(
                   REJECTED, FAILED, main="kept"))
        assert_that(out.kept, equal_to(["cat", "dog"]), label="Kept")
        assert_that(out[REJECTED] | beam.Map(lambda r: (r.key, r.reason, r.detail)),
                    equal_to([("giraffe", "too_long", "7 letters"), ("elephant", "too_long", "8 letters")]),
                    label="Rejected")
        assert_that(out[FAILED] | beam.Map(lambda f: (f.key, f.url, f.stage, f.error, "ValueError" in f.detail)),
                    equal_to([("boom", "http://w/boom", "toy", "ValueError: no rule for boom", True)]), label="Failed")
    counters = {c.key.metric.name: c.committed for c in p.result.metrics().query(MetricsFilter())["counters"]
                if c.key.metric.namespace == "toy"}
    assert counters == {R.KEPT: 2, "too_long": 2, "failed": 1}
