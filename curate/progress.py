"""A stage's progress, counted by its workers and shown by the driver, summed over all of them.

Workers (`curate.pipelines.common.Progress`, a pass-through DoFn) each keep a count of what they have done and
write it, at most every REPORT_EVERY seconds and at the end of every bundle, to
`OUT/_progress/<stage>/<reporter>.json` ({"done", "total", "first", "at", "unit"}: `first` is when the
reporter saw its first element, `at` when it wrote the report, wall-clock). The driver (`shown`, around the stage's pipeline) reads that folder
every half second and shows the sum: a bar (tqdm) when stderr is a terminal, else a plain log line on the
`curate.progress` logger every LINE_EVERY seconds and a last one at the end. Each line and the bar give
done/total, the rate and an ETA, the rate measured from the first element any worker saw to the latest
report, so start-up (building the job, loading the OCR model, fetching robots.txt) does not count as
slowness, and the rate stays put once the work is done. This works the same on every
runner whose workers can write under OUT (local processes, Dask, Dataflow with a bucket). The folder is
removed when the stage ends.

`CURATE_PROGRESS=bar|lines|off` overrides the choice (`bar` in a log that is not a terminal, `off` for quiet).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import fsspec

from curate.io import join, remove, write_json

FOLDER = "_progress"
REPORT_EVERY = 1.0  # seconds between a worker's reports
LINE_EVERY = 5.0  # seconds between plain lines
POLL_EVERY = 0.5  # seconds between the driver's reads
log = logging.getLogger("curate.progress")


def report_url(out: str, stage: str, reporter: str) -> str:
    return join(out, FOLDER, stage, f"{reporter}.json")


def report(out: str, stage: str, reporter: str, done: int, total: int, first: float, unit: str,
           at: float | None = None) -> None:
    """A worker's count so far (written whole, so a reader never sees half a report)."""
    write_json(report_url(out, stage, reporter),
               {"done": done, "total": total, "first": first, "at": time.time() if at is None else at, "unit": unit})


def gather(out: str, stage: str) -> dict[str, Any] | None:
    """The stage's progress summed over its reporters: {"done", "total", "first", "at", "unit"}, None before
    any."""
    fs, path = fsspec.core.url_to_fs(join(out, FOLDER, stage))
    try:
        names = fs.ls(path, detail=False)
    except FileNotFoundError:
        return None
    reports = []
    for name in names:
        try:
            with fs.open(name, "r") as fh:
                reports.append(json.load(fh))
        except (FileNotFoundError, ValueError):  # removed, or (on a store without atomic rename) being written
            continue
    if not reports:
        return None
    return {"done": sum(r["done"] for r in reports), "total": max(r["total"] for r in reports),
            "first": min(r["first"] for r in reports), "at": max(r["at"] for r in reports), "unit": reports[0]["unit"]}


def describe(stage: str, state: dict[str, Any]) -> str:
    """'download: 120/238 URLs fetched, 11.8/s, ETA 10 s' (no total, rate or ETA where none is known yet)."""
    done, total = min(state["done"], state["total"] or state["done"]), state["total"]
    text = f"{stage}: {done}{f'/{total}' if total else ''} {state['unit']}"
    elapsed = state["at"] - state["first"]
    if done and elapsed > 0:
        rate = done / elapsed
        text += f", {rate:.1f}/s"
        if total:
            text += f", ETA {max(total - done, 0) / rate:.0f} s"
    return text


def _mode() -> str:
    chosen = os.environ.get("CURATE_PROGRESS", "")
    if chosen in ("bar", "lines", "off"):
        return chosen
    return "bar" if sys.stderr.isatty() else "lines"


class _Display:
    """What the driver shows of one stage: a bar or lines, from `gather`."""

    def __init__(self, out: str, stage: str, mode: str):
        self.out, self.stage, self.mode = out, stage, mode
        self.bar: Any = None
        self.last_line = 0.0
        self.shown: dict[str, Any] | None = None

    def update(self, final: bool = False) -> None:
        state = gather(self.out, self.stage)
        if state is None:
            return
        now = time.time()
        if self.mode == "bar":
            self._bar(state)
        elif final or (now - self.last_line >= LINE_EVERY and state != self.shown):
            log.info("%s", describe(self.stage, state))
            self.last_line = now
        self.shown = state

    def _bar(self, state: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(desc=self.stage, unit=state["unit"], total=state["total"] or None, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}{postfix}"
                            if state["total"] else "{desc}: {n_fmt} {unit}{postfix}")
        if state["total"] and self.bar.total != state["total"]:
            self.bar.total = state["total"]
        self.bar.n = min(state["done"], state["total"] or state["done"])
        # tqdm puts ", " before the postfix: the rate and ETA as the lines give them
        self.bar.set_postfix_str(describe(self.stage, state).split(state["unit"], 1)[1].lstrip(", "), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.update(final=True)
        if self.bar is not None:
            self.bar.close()


def _clear(out: str, stage: str) -> None:
    """The stage's reports removed, and OUT/_progress with them once no other stage's are there."""
    remove(join(out, FOLDER, stage))
    fs, path = fsspec.core.url_to_fs(join(out, FOLDER))
    with contextlib.suppress(OSError):
        if fs.isdir(path) and not fs.ls(path):
            fs.rm(path, recursive=True)


@contextlib.contextmanager
def shown(out: str, stage: str) -> Iterator[None]:
    """Show the stage's progress while the body (its pipeline) runs; remove its reports afterwards."""
    mode = _mode()
    _clear(out, stage)
    if mode == "off":
        try:
            yield
        finally:
            _clear(out, stage)
        return
    display, stop = _Display(out, stage, mode), threading.Event()

    def poll() -> None:
        while not stop.wait(POLL_EVERY):
            with contextlib.suppress(Exception):  # progress must never break a run
                display.update()

    thread = threading.Thread(target=poll, name=f"progress-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            display.close()
        _clear(out, stage)
