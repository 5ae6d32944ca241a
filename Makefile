# Shepherd — every target sets up what it needs on a fresh clone.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
AWSCLI_VENV := .venv-awscli
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install test test-fast lint demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# aws-sam-cli pins boto3 and click exactly, so it lives in a virtual environment of its own.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

# awscli v1 vendors its own botocore and, once imported, aliases `import botocore` to it: keep it apart.
# The seed's CLI workflows are tested with it.
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install --quiet --disable-pip-version-check awscli==1.46.3
	touch $@

lint: install $(SAM_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(BIN)/python tools/lint_statemachines.py template.yaml tests/fixtures/app/template.yaml bench/fixtures/template.yaml

test: lint $(AWSCLI_VENV)/.installed
	$(BIN)/python -m pytest

test-fast: install $(AWSCLI_VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

demo: install
	@echo "make demo — the whole story in one command — arrives with its own issue (see README)."
	@echo "Until then: $(BIN)/shepherd local up --template template.yaml"

bench: install
	for script in bench/bench_*.py bench/judge.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(SAM_VENV) $(AWSCLI_VENV) .shepherd .pytest_cache .mypy_cache .ruff_cache *.egg-info
