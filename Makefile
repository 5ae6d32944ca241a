# Shepherd — every target sets up what it needs on a fresh clone.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
AWSCLI_VENV := .venv-awscli
PY313_VENV := .venv-py313
SECURITY_VENV := .venv-security
BIN := $(VENV)/bin
# Python 3.13, the Lambda runtime, from pyenv (newest 3.13.x; no shell init, no shims); override with PY313=/path.
PYENV_ROOT ?= $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
PY313 ?= $(or $(shell ls -d $(PYENV_ROOT)/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V | tail -n 1),$(error Python 3.13 not found under $(PYENV_ROOT)/versions/3.13.*: install it with pyenv or pass PY313=/path/to/python3.13))
# pip compiles bytecode at install (.venv: 24 -> 47 s user, once): the local cloud's training and model
# workers run with PYTHONDONTWRITEBYTECODE, as may the shell, and without .pyc files every process that
# imports scikit-learn, pandas and moto compiles them again (3.0 -> 1.5 s user per process).
PIP_FLAGS := --quiet --disable-pip-version-check
# Python caches the bytecode of the project's own modules when they are first imported.
unexport PYTHONDONTWRITEBYTECODE
# make test's work beside the suite (lint, build, the 3.13 tests and their venvs) runs niced: the suite is the
# longest path and the machine is CPU-bound, so the rest takes the CPU the suite leaves idle while it waits.
NICE ?= nice -n 10
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install test suite test-fast test-py313 lint lint-serverless build demo bench clean iam-report fault-table-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -e '.[local,dev]'
	touch $@

# aws-sam-cli pins boto3 and click exactly, so it lives in a virtual environment of its own.
$(SAM_VENV)/.installed:
	$(NICE) $(PYTHON) -m venv $(SAM_VENV)
	$(NICE) $(SAM_VENV)/bin/pip install $(PIP_FLAGS) aws-sam-cli==1.170.0
	touch $@

# awscli v1 vendors its own botocore and, once imported, aliases `import botocore` to it: keep it apart.
# The seed's CLI workflows are tested with it.
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install $(PIP_FLAGS) awscli==1.46.3
	touch $@

# checkov pins boto3, packaging and networkx below pyproject.toml's pins: the scanners get their own environment.
# Its .gitignore (as Python 3.13's venv writes) keeps git and ruff out of it.
$(SECURITY_VENV)/.installed: tools/requirements-security.txt
	$(NICE) $(PYTHON) -m venv $(SECURITY_VENV)
	echo '*' > $(SECURITY_VENV)/.gitignore
	$(NICE) $(SECURITY_VENV)/bin/pip install $(PIP_FLAGS) -r tools/requirements-security.txt
	touch $@

# The Lambda code's environment under Python 3.13: its runtime dependencies, pytest and moto, and the layer
# on the path (as /opt/python on Lambda); nothing of the local cloud or the training stack.
$(PY313_VENV)/.installed: tools/requirements-py313.txt
	$(NICE) $(PY313) -m venv $(PY313_VENV)
	$(NICE) $(PY313_VENV)/bin/pip install $(PIP_FLAGS) -r tools/requirements-py313.txt
	echo "$(CURDIR)/layers/shepherd" > "$$($(PY313_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/shepherd-layer.pth"
	touch $@

# checkov scans the CloudFormation SAM makes of the template, the generated roles included; each suppression sits
# on its resource in template.yaml with its reason; --skip-download: no call to Prisma Cloud. bandit skips what
# ruff's S rules skip (pyproject.toml): B101 asserts narrow types; B603 (and B404, its import notice) subprocess
# with argument lists, never a shell (B602/B605 still run); and B311: random only samples and simulates. Other
# findings carry `# nosec <id> # reason` on their line. docs/SECURITY.md lists them all.
BANDIT_SKIPS := B101,B311,B404,B603
CHECKOV_TEMPLATE := .shepherd/lint/template.cfn.json

lint: install $(SAM_VENV)/.installed $(SECURITY_VENV)/.installed
	$(NICE) $(BIN)/ruff check .
	$(NICE) $(BIN)/ruff format --check .
	$(NICE) $(BIN)/mypy
	$(NICE) $(BIN)/lint-imports
	$(NICE) $(BIN)/cfn-lint template.yaml
	$(NICE) $(BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(NICE) $(BIN)/python tools/check_iam.py template.yaml
	$(NICE) $(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(NICE) $(BIN)/python tools/lint_statemachines.py template.yaml tests/fixtures/app/template.yaml bench/fixtures/template.yaml
	$(NICE) $(BIN)/python tools/translate_template.py template.yaml $(CHECKOV_TEMPLATE)
	$(NICE) $(SECURITY_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f $(CHECKOV_TEMPLATE)
	$(NICE) $(SECURITY_VENV)/bin/bandit --quiet --recursive --skip $(BANDIT_SKIPS) layers functions localcloud shepherd_cli tools examples

# docs/FAULTS.md's table against a fresh run of the fault tests (the suite checks it against its own run's rows).
fault-table-check: install
	$(BIN)/python tools/fault_table.py --run --check

# cfn-lint with the serverless rules (awslabs/serverless-rules) alone; `lint` runs it too.
lint-serverless: install
	$(BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules

# The deployable artifacts, as `sam build` makes them for Lambda's python3.13/arm64: no Docker, so dependencies
# must have arm64 wheels (pip downloads them for that platform) and python3.13 must be on PATH.
build: $(SAM_VENV)/.installed
	PATH="$(dir $(PY313)):$$PATH" $(NICE) $(SAM_VENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build

# The handlers' and the layer's unit tests under Python 3.13 (the 3.11 run covers them too, with the local cloud).
# The judge's statistical simulations (error rates, grouping, monotonicity) run once, under 3.11: the 3.13 run
# checks the code runs there, which test_judge.py and test_judge_baseline.py exercise path by path.
PY313_TESTS := $(wildcard tests/unit/handlers tests/unit/test_config*.py tests/unit/test_names.py \
	tests/unit/test_s3_events.py tests/unit/test_judge.py tests/unit/test_judge_baseline.py \
	tests/unit/test_monitor_dataset.py tests/unit/test_monitor_statistics.py tests/unit/test_monitor_constraints.py \
	tests/unit/test_monitor_alert.py tests/unit/test_monitor_run.py)
test-py313: $(PY313_VENV)/.installed
	$(NICE) $(PY313_VENV)/bin/python -m pytest $(PY313_TESTS)

# Debian's Chromium renders demo-output/report.html in the end-to-end test (a screenshot with its plots).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# make test runs everything side by side on SETUP_JOBS make jobs: the four venvs, Chromium, lint, build, the 3.13
# tests and the suite, each step waiting only for what it needs (the suite: .venv, awscli and Chromium), its output
# printed whole when it ends; any step failing fails make test. The suite overlaps lint and build because it leaves
# the cores idle while its tests wait on virtual time and I/O. The suite is the longest path: it comes first, so make
# starts its prerequisites first, and the rest runs under $(NICE) to take only the CPU the suite leaves.
# The suite runs on PYTEST_WORKERS (default 2) pytest-xdist workers, each with its own local cloud (session fixtures
# are per worker) and its own /opt/ml directory; the tests that need the CPU to keep time (the demo, request-rate
# autoscaling) run on one worker in sequence (tests/conftest.py) while the rest spread over the workers. The rollout
# tests' verdicts do not depend on load, so they spread too. README.md ("Two commands") gives the time it takes.
# PYTEST_WORKERS=1 runs everything in one process.
TEST_SETUP := lint build test-py313
SETUP_JOBS ?= 4
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup)

test:
	$(MAKE) --no-print-directory --jobs=$(SETUP_JOBS) --output-sync=target suite $(TEST_SETUP)

# The suite alone (make test runs it beside lint and build). The fault tests in it write the fault table's rows
# (.shepherd/faults, emptied first); docs/FAULTS.md must match them, so the table is checked without a second run.
suite: install $(AWSCLI_VENV)/.installed $(CHROMIUM)
	rm -rf .shepherd/faults
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
	$(BIN)/python tools/fault_table.py --check

# The least-privilege report per role from the last test run's authorization logs (docs/LOCAL_IAM.md).
iam-report:
	$(BIN)/python tools/iam_report.py .shepherd/authz --markdown .shepherd/authz/report.md

test-fast: install $(AWSCLI_VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow"

demo: install
	$(BIN)/shepherd demo

bench: install
	for script in bench/bench_*.py bench/judge.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(SAM_VENV) $(AWSCLI_VENV) $(PY313_VENV) $(SECURITY_VENV) .aws-sam .shepherd .pytest_cache .mypy_cache .ruff_cache *.egg-info
