# Every target creates the virtualenv when it is missing, so a fresh clone needs only `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test bench demo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ocr,msg,ray,mcp]'
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --cov=rlmcli --cov-report=term:skip-covered

bench: $(STAMP)
	@command -v pdftotext >/dev/null || (apt-get update -qq && apt-get install -y -qq poppler-utils) >/dev/null 2>&1 || echo "note: could not install poppler-utils; pdftotext anchors will be skipped"
	@command -v rg >/dev/null || (apt-get install -y -qq ripgrep) >/dev/null 2>&1 || echo "note: could not install ripgrep; rg anchors will be skipped"
	@# Bytecode as a regular (non-editable) pip install has it, even under PYTHONDONTWRITEBYTECODE.
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/run.py

demo: $(STAMP)
	@RLM_HOME=$${RLM_HOME:-$(CURDIR)/.demo-home} bash fixtures/demo.sh $(BIN)/rlm

$(VENV)/.dev: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench fixtures
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
