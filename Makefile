# The two commands of a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PG_TEST_URL ?= postgresql://root@127.0.0.1:5432/test

.PHONY: run test test-sqlite test-postgres e2e chaos chaos-quick bench bench-smoke worker web sandboxes migrate clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)  ## web + worker + ERP sandboxes on embedded defaults, demo seeded
	$(BIN)/python scripts/run.py

test: $(STAMP)  ## the whole suite on SQLite, then on PostgreSQL
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: $(STAMP)
	TEST_DATABASE=sqlite $(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/e2e $(PYTEST_ARGS)

test-postgres: $(STAMP)
	TEST_DATABASE=postgresql TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/e2e -m "not connector_only" $(PYTEST_ARGS)

e2e: $(STAMP)  ## real-browser tests (apt's Chromium), screenshots into docs/screenshots
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

chaos: $(STAMP)  ## the chaos suite: worker kills, Redis outage, ERP faults, fuzzing, security
	$(BIN)/python -m chaos.run

chaos-quick: $(STAMP)  ## the same scenarios at CI size
	$(BIN)/python -m chaos.run --quick

bench: $(STAMP)  ## issue 7's benchmarks on SQLite and PostgreSQL: table + JSON line (~7 min)
	BENCH_PG_ADMIN_URL=$(PG_TEST_URL) $(BIN)/python -m bench.run --size full --db both

bench-smoke: $(STAMP)  ## small-size smoke of the benchmarks (CI; fails only if a benchmark breaks)
	BENCH_PG_ADMIN_URL=$(PG_TEST_URL) $(BIN)/python -m bench.run --size small --db both --fail-on error

worker: $(STAMP)
	$(BIN)/python worker.py

web: $(STAMP)
	$(BIN)/gunicorn -w 2 -b 127.0.0.1:5000 wsgi:app

sandboxes: $(STAMP)
	$(BIN)/python -m integrations.sandbox_server

migrate: $(STAMP)
	$(BIN)/flask --app wsgi db upgrade

clean:
	rm -rf $(VENV) var
