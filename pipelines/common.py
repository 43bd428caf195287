"""What every stage's Beam wiring shares: runner flags, the reject/dead-letter tables, and the driver's
end-of-run checks (manifest verified, counts add up, funnel merged into OUT/stats.json)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from curate.config import Config, write_config
from curate.errors import IntegrityError, UserError
from curate.io import (
    FAILED_SCHEMA,
    MANIFEST,
    REJECT_SCHEMA,
    WriteParquetShards,
    join,
    read_json,
    update_stats,
    verify_shards,
)
from curate.records import Failed, Rejected


class _Discarded(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Discarding" in record.getMessage():
            self.messages.append(record.getMessage())


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from the flags our parser did not know; a flag Beam does not know either is a user error."""
    options = PipelineOptions(list(beam_args))
    handler = _Discarded()
    logger = logging.getLogger("apache_beam.options.pipeline_options")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # our one-line error replaces Beam's warning
    try:
        options.get_all_options()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if handler.messages:
        raise UserError(f"unknown flags (neither curate's nor Beam's): {handler.messages[0].split(': ', 1)[-1]}")
    return options


class WriteRejectsAndFailures(beam.PTransform):
    """OUT/rejects/<stage>-*.parquet and OUT/failed/<stage>-*.parquet; outputs ShardInfo per shard."""

    def __init__(self, out: str, stage: str, num_shards: int):
        super().__init__()
        self.out, self.stage, self.num_shards = out, stage, num_shards

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        rejected, failed = pcolls
        merged = (
            rejected
            | "KeyRejects" >> beam.Map(lambda r: ((r.key, r.reason), r))
            | "MergeRejects" >> beam.CombinePerKey(_merge_rejects)
            | "Rejects" >> beam.Values()
        )
        rej = merged | "WriteRejects" >> WriteParquetShards(
            self.out, "rejects", self.stage, REJECT_SCHEMA, Rejected._asdict, lambda r: r.key, self.num_shards)
        fail = failed | "WriteFailed" >> WriteParquetShards(
            self.out, "failed", self.stage, FAILED_SCHEMA, Failed._asdict, lambda r: r.key, self.num_shards)
        return (rej, fail) | "AllShards" >> beam.Flatten()


def _merge_rejects(rejects: Any) -> Rejected:
    """One row per (key, reason): the first by detail (deterministic), with the occurrences summed."""
    items = list(rejects)
    first = min(items, key=lambda r: (r.detail, r.url))
    return first._replace(occurrences=sum(r.occurrences for r in items))


def finish_stage(out: str, stage: str, folder: str, config: Config, **config_facts: Any) -> dict[str, Any]:
    """The driver's end of a stage run: the manifest exists, its shards are there as recorded, every funnel
    adds up; then the funnel goes into OUT/stats.json and the config into OUT/config.yaml."""
    url = join(out, folder, MANIFEST)
    manifest: dict[str, Any] | None = read_json(url)
    if not manifest:
        raise IntegrityError(f"{stage} finished without writing {url}")
    verify_shards(out, [s for table in manifest["tables"].values() for s in table])
    for name, part in manifest["funnel"].items():
        check_funnel(stage, name, part)
    update_stats(out, stage, manifest["funnel"])
    write_config(config, out, **config_facts)
    return manifest


def check_funnel(stage: str, name: str, funnel: dict[str, Any]) -> None:
    """inputs == kept + rejected + failed, or the run fails loudly."""
    rejected = sum(funnel.get("rejected", {}).values())
    total = funnel.get("kept", 0) + rejected + funnel.get("failed", 0)
    if funnel.get("input") != total:
        raise IntegrityError(f"{stage} {name}: {funnel.get('input')} in, but kept + rejected + failed = {total}")
