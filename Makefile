# hmlib: two commands on a fresh machine (Python 3.11):
#   make report   -> .venv, install, render reports/$(REGION)/report.html and report.pdf
#   make test     -> .venv, install, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
REGION ?= jura
JOBS   ?= 2

.PHONY: install report test test-fast lint regions clean-reports lock

# uv (from PyPI, pinned in the lock) installs the locked versions: it downloads in parallel where pip
# fetches one package at a time, and skips bytecode compilation. The venv keeps pip for `make lock`.
$(VENV)/.installed: pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c requirements-lock.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

report: install
	$(BIN)/hmlib run $(REGION) --jobs $(JOBS)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=30

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

regions: install
	$(BIN)/hmlib regions

clean-reports:
	rm -rf reports/*/ reports/.staging-* reports/.old-*

# refresh the pinned versions after changing dependencies
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements-lock.txt

lint: install
	$(BIN)/ruff check .
