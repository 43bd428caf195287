"""`curate run`: every stage in order, each skipped when its manifest is complete for its inputs and settings.

extract (crawl files, URL lists -> OUT/refs) -> download (OUT/fetched) -> decode (OUT/fetched and any given
pictures -> OUT/images) -> dedup (OUT/dedup) -> text (OUT/text) -> write (OUT/shards); the `run` command then
writes OUT/report.html. Each stage commits its shards atomically and its manifest last, so a run killed at any
point resumes at the first stage whose manifest is missing and ends with the same shards as an uninterrupted
run (the stages are deterministic; download keeps the shards an earlier run committed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from curate.config import Config
from curate.crawl import CrawlFile
from curate.io import join

log = logging.getLogger("curate.run")


def run_all(files: list[CrawlFile], out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False,
            text: bool = True, on_stage: Callable[[str, dict[str, Any], float], None] | None = None,
            pictures: Sequence[str] = (), skipped: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Run (or skip) every stage; returns each stage's manifest. Crawl files and URL lists (`files`) go through
    extract and download; `pictures` (image files, tar shards) join the fetched shards at decode, and `skipped`
    (files of an input folder that are neither, by suffix) is counted there. Without `files`, extract and
    download do not run. `force` reruns every stage."""
    from curate.pipelines import decode, dedup, download, extract, write
    from curate.pipelines import text as text_stage
    from curate.readers import list_sources

    dedup.check_settings(out, config, force)  # the evaluation sets: a user error shows before any work

    def sources() -> list[str]:
        fetched = list_sources([join(out, "fetched", "*.tar")], allow_empty=True) if files else []
        return fetched + list(pictures)

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if files:
        steps += [("extract", lambda: extract.run(files, out, config, beam_args, force=force)),
                  ("download", lambda: download.run(out, config, beam_args, force=force))]
    steps += [("decode", lambda: decode.run(sources(), out, config, beam_args, force=force, skipped=skipped)),
              ("dedup", lambda: dedup.run(out, config, beam_args, force=force))]
    if text:
        steps.append(("text", lambda: text_stage.run(out, config, beam_args, force=force)))
    steps.append(("write", lambda: write.run(out, config, beam_args, force=force)))
    manifests: dict[str, dict[str, Any]] = {}
    for name, step in steps:
        started = time.monotonic()
        log.info("%s: starting", name)
        manifests[name] = step()
        if on_stage:
            on_stage(name, manifests[name], time.monotonic() - started)
    return manifests
