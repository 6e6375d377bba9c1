# Two commands on a fresh clone: `make demo` (the paper's loop on real data, small budget)
# and `make test` (the test suite). Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(if $(MODGRAPH_DATA),$(MODGRAPH_DATA),$(if $(wildcard ../shared/data),../shared/data,))

.PHONY: demo test venv clean

$(VENV)/.installed: requirements.txt pyproject.toml plugins/modgraph-vision/pyproject.toml plugins/modgraph-audio/pyproject.toml plugins/modgraph-text/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e ".[test,app,ray]" -e plugins/modgraph-vision -e plugins/modgraph-audio -e plugins/modgraph-text
	$(PY) -m pip check
	touch $@

venv: $(VENV)/.installed

demo: venv
	MODGRAPH_DATA="$(DATA)" $(PY) examples/demo.py

test: venv
	$(PY) -m pytest

clean:
	rm -rf demo-out translations
