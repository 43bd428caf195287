"""The sample crawl: a small, deterministic web (pages, images, faults, WARC/WAT files, truth) that the demo,
the tests and the benchmarks serve on 127.0.0.1. A leaf: only the commands, the trainer's toy data and the
tests import it."""

DEFAULT_PORT = 18700  # the first of the sample's ports (one per host: curate.sample.plan.HOSTS)
