# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv when it is missing and install what they need into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.footfall-dev-installed

.PHONY: demo test bench clean help

help:
	@echo "make demo   replay a real capture through agent -> broker -> collector -> PostgreSQL and print the tables"
	@echo "make test   run the whole test suite against a real broker and a real PostgreSQL"
	@echo "make bench  run the benchmark scripts in bench/"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/footfall demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/wifi_edge.py
	$(PY) bench/camera.py
	$(PY) bench/ingest.py
	$(PY) bench/agent_memory.py
	$(PY) bench/web_page.py

clean:
	rm -rf $(VENV) .demo .pytest_cache *.egg-info
