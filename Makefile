# Conveyor: the two commands are `make demo` and `make test`; everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test tools lock lint unit integration bench bench-soak chaos chaos-patroni clean help bench-relay bench-metrics bench-fairness bench-retention bench-checksum bench-catalog bench-cluster chaos-cluster schemas docs-db drill

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the demo: workers + simulated shop, progress and a summary
	$(BIN)/conveyor demo $(DEMO_ARGS)

test: $(STAMP) lint tools  ## run the whole test suite (ruff, mypy, then unit, integration, short chaos)
	$(BIN)/pytest $(PYTEST_ARGS)

tools:  ## install the real tools the suite runs (promtool, ...) where missing
	bash tests/setup-tools.sh

lint: $(STAMP)  ## ruff and mypy (configured in pyproject.toml); the handler tests' fake is type-checked too
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy tests/unit/fakes.py tests/unit/test_handlers.py

unit: $(STAMP)  ## only the fast unit tests
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)  ## only the tests against real PostgreSQL and RabbitMQ
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

bench-relay: $(STAMP)  ## relay benchmark: change-to-partner latency at 500/s, drain rate with confirms
	$(BIN)/python bench/relay_bench.py $(BENCH_ARGS)

schemas: $(STAMP)  ## regenerate schemas/json/*.schema.json and schemas/asyncapi.yaml from the models
	$(BIN)/python -m conveyor.schemas.export

docs-db: $(STAMP)  ## regenerate docs/database.md from the catalog of a freshly migrated database
	$(BIN)/python -m tests.support.database_docs --output docs/database.md

lock:  ## regenerate deploy/requirements.lock (the image's exact runtime dependencies) in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet .
	{ head -n 3 deploy/requirements.lock; .lock-venv/bin/pip freeze --exclude conveyor; } > deploy/requirements.lock.new
	mv deploy/requirements.lock.new deploy/requirements.lock && rm -rf .lock-venv

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

bench: $(STAMP)  ## order-intake benchmark vs a plain reference consumer (takes a few minutes)
	$(BIN)/python -m bench.orders_bench $(BENCH_ARGS)

bench-metrics: $(STAMP)  ## the metrics' cost: order throughput with the endpoint off and on (scraped), same run
	$(BIN)/python -m bench.metrics_bench $(BENCH_ARGS)

bench-fairness: $(STAMP)  ## tenant fairness: other tenants' p99 with and without one tenant flooding at 10x its limit
	$(BIN)/python -m bench.fairness_bench $(BENCH_ARGS)

bench-retention: $(STAMP)  ## retention: dropping inbox partitions vs DELETE + VACUUM on 3M rows, intake probed meanwhile (--server machine|throwaway|both)
	$(BIN)/python -m bench.retention_bench $(BENCH_ARGS)

bench-checksum: $(STAMP)  ## conveyor db checksum on 3M rows vs count(*) and a scan rendering every row as text, same run
	$(BIN)/python -m bench.checksum_bench $(BENCH_ARGS)

bench-catalog: $(STAMP)  ## catalogue: import of 1,000,000 products (rows/s vs plain COPY), search p50/p95 with typos (vs PK lookup)
	flock /tmp/conveyor-bench.lock $(BIN)/python -m bench.catalog_bench $(BENCH_ARGS)

bench-cluster: $(STAMP)  ## scaling figure: one RabbitMQ node vs a 3-node cluster vs the cluster through PgBouncer, same run; CPU and bytes per order
	flock /tmp/conveyor-bench.lock $(BIN)/python -m bench.cluster_bench $(BENCH_ARGS)

bench-soak: $(STAMP)  ## soak: 200,000 orders on one database, plain and with a pinned xmin; rate, p99, outbox per interval
	$(BIN)/python -m bench.soak_bench $(BENCH_ARGS)

DRILL_ARGS ?=
drill: $(STAMP) tools  ## restore drill: workers + traffic, backup, T, disaster, restore to T; prints RPO/RTO (DRILL_ARGS="--disaster drop-table")
	$(BIN)/python -m tests.drill.run $(DRILL_ARGS)

CHAOS_SECONDS ?= 600
CHAOS_SEED    ?=
chaos: $(STAMP)  ## chaos soak: workers under seeded faults, Jepsen-style checker (CHAOS_SECONDS=600 CHAOS_SEED=n)
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

# PostgreSQL failover soak: a 3-member Patroni cluster (synchronous replication), the primary
# killed with SIGKILL every 20-45 s under load (CHAOS_DATABASE=patroni-async: asynchronous).
# Holds the benchmark lock, like every run that starts a cluster on this shared machine.
CHAOS_DATABASE ?= patroni
chaos-patroni: $(STAMP)  ## failover soak on Patroni (CHAOS_SECONDS=600 CHAOS_SEED=n CHAOS_DATABASE=patroni|patroni-async)
	bash tests/setup-tools.sh
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) flock /tmp/conveyor-bench.lock \
		$(BIN)/python -m tests.chaos.run --database $(CHAOS_DATABASE) $(CHAOS_ARGS)

chaos-cluster: $(STAMP)  ## chaos soak on a 3-node RabbitMQ cluster: leader-node kills, partitions, rolling restarts (CHAOS_SECONDS, CHAOS_SEED)
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) flock /tmp/conveyor-bench.lock $(BIN)/python -m tests.chaos.run --cluster 3 $(CHAOS_ARGS)
