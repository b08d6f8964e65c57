# socialrec — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The local wheel directory pip's configuration names (torch's CPU wheel lives there).
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
UV_FLAGS := $(if $(wildcard $(FIND_LINKS)),--find-links $(FIND_LINKS))
PORT ?= 3000
DEMO_CONFIG ?= configs/synthetic.yaml
# The MLflow tracking server (make mlflow-server): PostgreSQL backend store, served artifacts.
MLFLOW_PORT ?= 5000
MLFLOW_BACKEND ?= postgresql+psycopg://postgres@127.0.0.1:5432/mlflow
MLFLOW_ARTIFACTS ?= mlartifacts
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo train serve serve-bg stop test check lint imports typecheck bench clean \
	mlflow-server bento

install: $(VENV)/.installed

# uv installs the stack in ~10 s against pip's ~100 s; pip is the fallback.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q uv >/dev/null 2>&1 || true
	@if [ -x $(VENV)/bin/uv ]; then \
	  $(VENV)/bin/uv pip install -q -p $(PY) $(UV_FLAGS) -e ".[dev]"; \
	else \
	  $(PY) -m pip install -q -e ".[dev]"; \
	fi
	@touch $@

train: install
	$(VENV)/bin/socialrec train --config $(DEMO_CONFIG) --promote

serve: install
	$(VENV)/bin/socialrec serve --config $(DEMO_CONFIG) --port $(PORT)

serve-bg: install stop
	@mkdir -p artifacts
	@setsid nohup $(VENV)/bin/socialrec serve --config $(DEMO_CONFIG) --port $(PORT) \
	  > artifacts/server.log 2>&1 & echo $$! > artifacts/server.pid
	@echo "waiting for http://127.0.0.1:$(PORT)/readyz ..."
	@for i in $$(seq 1 120); do \
	  curl -sf http://127.0.0.1:$(PORT)/readyz >/dev/null && exit 0; sleep 1; \
	done; echo "server did not become ready; see artifacts/server.log"; tail -30 artifacts/server.log; exit 1

demo: train serve-bg
	$(VENV)/bin/socialrec demo --url http://127.0.0.1:$(PORT) --config $(DEMO_CONFIG)
	@echo
	@echo "The server is still running on http://127.0.0.1:$(PORT) (log: artifacts/server.log)."
	@echo "Stop it with: make stop"

stop:
	@if [ -f artifacts/server.pid ]; then \
	  kill -- -$$(cat artifacts/server.pid) 2>/dev/null || true; rm -f artifacts/server.pid; \
	  echo "server stopped"; \
	fi

# The static checks first (seconds), then the suite: what CI runs (.ci/run).
test: check
	$(VENV)/bin/pytest -q

check: lint imports typecheck

lint: install
	$(VENV)/bin/ruff check .

# DESIGN.md's import direction (contracts in pyproject.toml)
imports: install
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy

# Runs in the foreground; ready when `curl -sf http://127.0.0.1:$(MLFLOW_PORT)/health` answers OK.
# Creates the database if missing. Train, promote and serve through it with
# MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT).
mlflow-server: install
	$(VENV)/bin/socialrec mlflow-server --backend-store-uri $(MLFLOW_BACKEND) \
	  --artifacts-destination $(MLFLOW_ARTIFACTS) --port $(MLFLOW_PORT)

# A Bento serving the registry's champion (packed into it); BENTOML_HOME says where it is stored.
bento: install
	$(VENV)/bin/socialrec bento build --config $(DEMO_CONFIG)

bench: install
	$(PY) -m bench.serving

clean: stop
	rm -rf artifacts mlruns mlruns.db events.db*
