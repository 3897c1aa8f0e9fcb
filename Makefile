# The two commands a new user needs: `make demo` and `make test`.
# Each builds its own virtual environment from the pinned requirements first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs screenshots bench bench-webhooks bench-loop bench-faults lock clean

$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

## Run a sample job end to end on the local FirecREST sandbox, live log included,
## then the whole CI/CD Ext loop: webhook -> mirror -> GitLab pipeline -> FirecREST -> GitHub status.
demo: $(STAMP)
	$(BIN)/python -m sandbox.demo
	$(BIN)/python -m sandbox.demo_loop

## Lint, type-check and run the whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	./scripts/services.sh start > .services.env
	set -a && . ./.services.env && set +a && PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/pytest.sh $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Refresh the README's screenshots of the pages: the browser tests take them (build/screenshots/).
SHOWN := sign-in repositories setup runs run-running job-log
screenshots: $(STAMP)
	./scripts/services.sh start > .services.env
	set -a && . ./.services.env && set +a && PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser
	mkdir -p docs/screenshots
	for name in $(SHOWN); do cp build/screenshots/small/$$name.png docs/screenshots/$$name.png; done

## Regenerate the README's tables of the Action's inputs and outputs from action.yml, and
## docs/settings.md from the middleware's Settings model.
docs: $(STAMP)
	$(BIN)/python scripts/action_docs.py
	$(BIN)/python scripts/settings_docs.py

## Print the runner's overhead and FirecREST request figures against a 10 s polling baseline.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.runner_overhead $(BENCH_ARGS)

## Webhook acknowledgement throughput and latency through the nginx front of deploy/nginx:
## nginx, gunicorn, Redis, PostgreSQL (scripts/services.sh installs them), wrk. BENCH_ARGS=--direct: gunicorn alone.
bench-webhooks: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m benchmarks.webhook_ack $(or $(BENCH_ARGS),--runs 5)

## The middleware loop: incremental mirror against a fresh one, and webhook -> pipeline latency.
bench-loop: $(STAMP)
	$(BIN)/python -m benchmarks.mirror_incremental
	$(BIN)/python -m benchmarks.webhook_to_pipeline

## The delivery guarantee at scale: >= 1,000 deliveries per fault scenario, lost and duplicated counted.
bench-faults: $(STAMP)
	./scripts/services.sh start > /dev/null
	$(BIN)/python -m benchmarks.delivery_guarantee $(BENCH_ARGS)

## Regenerate the pinned requirements from pyproject.toml: the Action's image, the dev tools, and the
## middleware's image (Dockerfile.middleware: hash-pinned at the versions the tests ran).
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes pyproject.toml -o requirements/runtime.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 pyproject.toml --extra dev -o requirements/dev.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes pyproject.toml --extra middleware \
		-c requirements/dev.txt -o requirements/middleware.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
