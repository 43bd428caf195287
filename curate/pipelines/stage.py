"""What every stage repeats, in one place: skip when up to date, clear what a rerun replaces, run the Beam
graph, write the manifest last, then check it on the driver and merge its funnel into OUT/stats.json.

A stage module declares one `Stage` (its name, its folder under OUT, the config sections and upstream
tables its outputs depend on, what a rerun clears) and a `build(p)` that wires its graph and ends in
`WriteManifest`; its `run()` hands both to `Stage.run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from curate import __version__, progress
from curate.config import Config, write_config
from curate.errors import IntegrityError
from curate.io import (
    MANIFEST,
    join,
    manifest_tables,
    read_json,
    remove,
    remove_stale_folders,
    update_stats,
    update_timings,
    verify_listed,
    write_json,
)
from curate.pipelines.common import pipeline_options


@dataclass(frozen=True)
class Stage:
    name: str  # curate.reasons' stage name: its rejects/failed file prefix, its key in stats.json
    folder: str  # OUT/<folder> holds its tables and its _MANIFEST.json
    # What its output depends on: its config sections (extract's shard count sizes every table) and the
    # tables of the stages before it. A stage is up to date when its manifest records the same digest, so
    # changing the text filter reruns text and write only, and a rerun extract makes every later stage rerun.
    sections: tuple[str, ...]
    upstream: tuple[str, ...]
    clears: tuple[str, ...]  # under OUT, removed before a run: what the run writes again
    # The stage whose kept records are this stage's input (the first of these folders that has a manifest):
    # its funnel's `input` must equal their `kept`, or something vanished between the two stages.
    fed_by: tuple[str, ...] = ()

    def manifest_url(self, out: str) -> str:
        return join(out, self.folder, MANIFEST)

    def digest(self, out: str, config: Config) -> str:
        """The digest a manifest records: the stage's settings and the committed shards it reads."""
        digest = hashlib.sha256(config.digest(*self.sections).encode())
        for folder in self.upstream:
            upstream = read_json(join(out, folder, MANIFEST)) or {}
            digest.update(json.dumps([folder, upstream.get("tables")], sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def up_to_date(self, out: str, config: Config, inputs: Any) -> dict[str, Any] | None:
        """The manifest, when it is complete for these inputs and settings; else None."""
        manifest: dict[str, Any] | None = read_json(self.manifest_url(out))
        if (manifest and manifest.get("complete") and manifest.get("inputs") == inputs
                and manifest.get("config_digest") == self.digest(out, config)):
            return manifest
        return None

    def run(self, out: str, config: Config, beam_args: Sequence[str], inputs: Any,
            build: Callable[[beam.Pipeline], None], force: bool = False,
            config_facts: dict[str, Any] | None = None) -> dict[str, Any]:
        """Skip (the manifest, marked `skipped`) or run the stage; returns its checked manifest. `inputs` is
        what the manifest records of the inputs; `config_facts` go into OUT/config.yaml beside the settings."""
        if not force and (manifest := self.up_to_date(out, config, inputs)):
            return {**manifest, "skipped": True}
        options = pipeline_options(beam_args)
        started = time.monotonic()
        scratch = [join(out, "_inputs", self.name)]  # the lists of its inputs (DriverList), removed after the run
        for stale in [*(join(out, rel) for rel in self.clears), *scratch]:
            remove(stale)
        with progress.shown(out, self.name), beam_tempdir(), beam.Pipeline(options=options) as p:
            build(p)
        for stale in scratch:
            remove(stale)
        manifest = self.finish(out, config, config_facts or {})
        update_timings(out, self.name, time.monotonic() - started)
        return manifest

    def finish(self, out: str, config: Config, config_facts: dict[str, Any]) -> dict[str, Any]:
        """The driver's end of a run: the manifest exists and says complete, its shards are there as recorded,
        every funnel adds up; then the funnel goes into OUT/stats.json and the config into OUT/config.yaml."""
        url = self.manifest_url(out)
        manifest: dict[str, Any] | None = read_json(url)
        if not manifest:
            raise IntegrityError(f"{self.name} finished without writing {url}")
        if not manifest.get("complete"):
            raise IntegrityError(manifest.get("error") or f"{self.name} did not complete: see {url}")
        verify_listed(out, [s for table in manifest["tables"].values() for s in table])
        for name, part in manifest["funnel"].items():
            check_funnel(self.name, name, part)
        self._check_chain(out, manifest)
        update_stats(out, self.name, manifest["funnel"])
        write_config(config, out, **config_facts)
        return manifest


    def _check_chain(self, out: str, manifest: dict[str, Any]) -> None:
        upstream = next((m for folder in self.fed_by if (m := read_json(join(out, folder, MANIFEST)))), None)
        if not upstream:
            return
        part = next(iter(manifest["funnel"]))
        before, now = upstream["funnel"].get(part, {}).get("kept"), manifest["funnel"][part]["input"]
        if before is not None and before != now:
            raise IntegrityError(f"{self.name} took {now} {part} but {upstream['stage']} kept {before}: records were "
                                 "lost or doubled between the two stages (two images under one key?)")


BEAM_TEMP_PREFIX = "curate-beam-"  # curate-beam-<pid>-<random>: one pipeline's local temporary files


@contextlib.contextmanager
def beam_tempdir() -> Iterator[str]:
    """Local temporary files of one pipeline run in a folder of ours, removed after it. Beam's local job server
    makes a /tmp/beam-temp* root (and a requirements cache and staging folders) per pipeline and never removes
    them; pointing `tempfile` and TMPDIR (inherited by worker processes) here for the run catches them all.
    Folders of killed runs (their pid gone) are removed by the next run."""
    remove_stale_folders(BEAM_TEMP_PREFIX)
    folder = tempfile.mkdtemp(prefix=f"{BEAM_TEMP_PREFIX}{os.getpid()}-")
    saved, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = folder, folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


class WriteManifest(beam.DoFn):
    """A stage's last write, once its shards are committed and checked (the main input, one list): the manifest
    whose presence marks the stage complete. `describe(shards, *side_inputs)` gives the stage's own entries,
    its `funnel` at least ({part: {input, kept, rejected: {reason: n}, failed}}); it may override `complete`
    (with an `error` saying why not)."""

    def __init__(self, stage: Stage, out: str, inputs: Any, digest: str, describe: Callable[..., dict[str, Any]]):
        self.stage, self.out, self.inputs, self.digest, self.describe = stage, out, inputs, digest, describe

    def process(self, shards: list[Any], *side) -> Iterator[None]:
        # (no hint on *side: Beam's type check would want a tuple there when a stage passes no side input)
        manifest = {"stage": self.stage.name, "complete": True, "curate_version": __version__,
                    "config_digest": self.digest, "inputs": self.inputs, "tables": manifest_tables(shards),
                    **self.describe(shards, *side)}
        write_json(self.stage.manifest_url(self.out), manifest)
        yield None


def check_funnel(stage: str, name: str, funnel: dict[str, Any]) -> None:
    """inputs == kept + rejected + failed, or the run fails loudly."""
    rejected = sum(funnel.get("rejected", {}).values())
    total = funnel.get("kept", 0) + rejected + funnel.get("failed", 0)
    if funnel.get("input") != total:
        raise IntegrityError(f"{stage} {name}: {funnel.get('input')} in, but kept + rejected + failed = {total}")
