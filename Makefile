# The two commands of the README: `make demo` and `make test`.
# Both install launchkit (and its test dependencies) into .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAUNCHKIT := $(BIN)/launchkit

.PHONY: demo test install bench-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml examples/launchkit-example-provider/pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The plugin tutorial's finished package: installed like any third-party plugin, tested below.
	$(BIN)/python -m pip install --quiet -e 'examples/launchkit-example-provider[test]'
	touch $@

install: $(VENV)/.installed

# The demo launch (sequences/academy-spring.toml), replayed from scratch in simulated time:
# the audience joins in February, then one tick at each moment that matters.
demo: install
	rm -rf launchkit.db launchkit.db-wal launchkit.db-shm launchkit.db.lock mail report.html
	LAUNCHKIT_NOW="2027-02-20 10:00" $(LAUNCHKIT) audience import demo-audience.csv
	$(LAUNCHKIT) check
	$(LAUNCHKIT) run --now "2027-03-01 09:05"
	$(LAUNCHKIT) run --now "2027-03-04 09:05"
	$(LAUNCHKIT) run --now "2027-03-07 09:05"
	$(LAUNCHKIT) run --now "2027-03-10 09:05"
	# Sales come in as they happen (a payment webhook would record them the same way).
	LAUNCHKIT_NOW="2027-03-10 22:00" $(LAUNCHKIT) conversions import demo-sales.csv
	$(LAUNCHKIT) run --now "2027-03-11 10:05"
	$(LAUNCHKIT) run --now "2027-03-12 10:05"
	$(LAUNCHKIT) run --now "2027-03-14 21:00"
	LAUNCHKIT_NOW="2027-03-15 00:10" $(LAUNCHKIT) conversions import demo-sales-last-day.csv
	$(LAUNCHKIT) run --now "2027-03-15 08:05"
	$(LAUNCHKIT) run --now "2027-03-16 10:05"
	LAUNCHKIT_NOW="2027-03-17 09:00" $(LAUNCHKIT) report academy-spring
	LAUNCHKIT_NOW="2027-03-17 09:00" $(LAUNCHKIT) report academy-spring -o report.html
	@echo
	@echo "$$(ls mail/new | wc -l) messages in mail/new/ — open one in a mail client — and report.html. Then:"
	@echo "  $(LAUNCHKIT) plan"
	@echo "  $(LAUNCHKIT) preview academy-spring doors-open --contact camille.roux@example.com"

# The PostgreSQL tests (and benchmark smoke run) use the server LAUNCHKIT_TEST_POSTGRES names;
# when it is not set, the role and database .ci/run creates on this machine's cluster, if they
# answer. Without a server those tests are skipped, saying how to enable them (under CI=true
# they fail instead). The restart test also needs LAUNCHKIT_TEST_POSTGRES_RESTART (.ci/run).
test bench-smoke: export LAUNCHKIT_TEST_POSTGRES ?= $(shell $(BIN)/python -m tests.backends 2>/dev/null)

test: install
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest examples/launchkit-example-provider/tests
	$(MAKE) --no-print-directory bench-smoke

# The benchmarks at a small size, so they never rot: they check what they measure (every
# message sent once) but time nothing that could fail on a busy machine. The suite is the
# command behind docs/benchmarks.md (send + floor, plan, idle tick, report, peak RSS).
bench-smoke: install
	$(BIN)/python -m benchmarks suite --sizes 10000 --idle-ticks 5 --report-repeat 1 > /dev/null
	$(BIN)/python -m benchmarks.send --messages 2000 --ceiling > /dev/null
	$(BIN)/python -m benchmarks.serve --smoke > /dev/null
	@if [ -n "$$LAUNCHKIT_TEST_POSTGRES" ]; then \
		$(BIN)/python -m benchmarks.workers --messages 2000 --workers 2 > /dev/null; \
	else echo "benchmarks: workers (PostgreSQL) skipped: no LAUNCHKIT_TEST_POSTGRES"; fi
	@echo "benchmarks: smoke run passed"
