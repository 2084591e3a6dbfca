# The front door. `make run` and `make test` set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The development environment, exactly: versions and sha256 of every file (`make lock` writes it),
# and its installers (pip, uv) cut from it.
DEV_LOCK := requirements/dev.txt
TOOLING_LOCK := requirements/tooling.txt
# checkov pins boto3, packaging and networkx below the project's versions: it gets a venv of its
# own, from pyproject.toml's `checkov` dependency group, locked in requirements/checkov.txt.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_LOCK := requirements/checkov.txt

.PHONY: run test check lint types imports complexity bench bench-capacity bench-ab package package-check lock deploy clean

# Exactly what the lock holds, with the hashes it holds: pip installs the locked installers, uv
# makes .venv equal to the lock (what is not in it is removed), then adds the project itself.
# A lock that pyproject.toml's dependencies outgrew is refused.
$(STAMP): pyproject.toml $(DEV_LOCK) $(TOOLING_LOCK) requirements/lambda-*.txt
	@$(PYTHON) scripts/package.py check-locks
	@echo "setting up $(VENV) from $(DEV_LOCK) (only when it or pyproject.toml changed)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --require-hashes --no-deps -r $(TOOLING_LOCK)
	@$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes $(DEV_LOCK)
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# Installed by .venv's uv, so this venv holds checkov's lock and nothing else.
$(CHECKOV_STAMP): $(STAMP) $(CHECKOV_LOCK)
	@echo "setting up $(CHECKOV_VENV) from $(CHECKOV_LOCK) (only when it changed)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(CHECKOV_VENV)
	@$(BIN)/uv pip sync -q --python $(CHECKOV_VENV)/bin/python --require-hashes $(CHECKOV_LOCK)
	@touch $(CHECKOV_STAMP)

run: $(STAMP)
	@$(BIN)/event-processor demo

# Four workers on two cores: most tests wait on moto's server over loopback, so two workers left
# a core idle (0.9 of 2 in use over a whole run). No test's outcome depends on the machine's
# load: the fault drains' deadlines run on a simulated clock (tests/faults/clock.py).
test: $(STAMP)
	$(BIN)/python -m pytest -n 4 -q

# checkov reads SAM's AWS::Serverless::Function with the cloudformation framework. Its findings
# that do not apply are skipped in template.yaml (Metadata: checkov: skip), each with its reason.
# --skip-download: no call to Prisma Cloud for guidelines, so lint needs no network.
lint: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact \
		--skip-download

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# domain/ and application/: modules of at most 400 lines, functions of at most 60 lines and of
# cyclomatic complexity at most 15 (radon).
complexity: $(STAMP)
	$(BIN)/python scripts/core_limits.py

check: lint types imports complexity test

# bench/sketch_error.py: the error and size of unique users' sketches (about 40 s);
# `make bench SKETCH_SCALE=4` runs four times its trials.
SKETCH_SCALE ?= 1
# BENCH_FLAGS go to bench/run.py (`--quick`, `--skip-aws`, `--capacity-events 5000`).
BENCH_FLAGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_FLAGS)
	$(BIN)/python bench/sketch_error.py --scale $(SKETCH_SCALE)

# The cost and capacity part of `make bench` alone (both workloads, exact and sketch unique
# users, at moto's server), into bench/results.json's `capacity`.
bench-capacity: $(STAMP)
	$(BIN)/python bench/run.py --capacity-only $(BENCH_FLAGS)

# The pipeline's throughput here against BASE's, in alternating processes of one run.
BASE ?= HEAD~1
bench-ab: $(STAMP)
	$(BIN)/python bench/compare.py --base $(BASE)

# The Lambda zip for template.yaml (arm64, Python 3.12); `ARCH=x86_64 make package` for x86.
ARCH ?= arm64
LAMBDA_PYTHON ?= 3.12
package: $(STAMP)
	$(BIN)/python scripts/package.py build --arch $(ARCH) --python-version $(LAMBDA_PYTHON) \
		--output dist/event-processor-$(ARCH).zip

# Re-resolves every lock: requirements/dev.txt (uv, universal), tooling.txt cut from it,
# checkov.txt, and, at dev.txt's runtime versions, requirements/lambda-*.txt. Run it after
# changing pyproject.toml's dependencies, and commit the result. Not behind $(STAMP), which refuses
# the stale lock this is here to replace: it needs only the installers, from the tooling lock.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -qq --require-hashes --no-deps -r $(TOOLING_LOCK)
	$(BIN)/python scripts/package.py lock

# Builds the same package for this machine, unpacks it into a clean venv holding only boto3 (what
# the runtime ships) and imports the handler module from it. Slow (pip): not part of `make test`.
package-check: $(STAMP)
	$(BIN)/python scripts/package.py check

# Called by `sam build` (template.yaml: BuildMethod makefile) with ARTIFACTS_DIR set.
build-EventProcessorFunction:
	$(PYTHON) scripts/package.py build --arch arm64 --python-version 3.12 --output-dir "$(ARTIFACTS_DIR)"

# Needs the AWS SAM CLI and credentials; see docs/deployment.md. Not run in CI.
deploy:
	sam build
	sam deploy --guided

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .pytest_cache .ruff_cache build dist
