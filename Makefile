# The two commands in README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The documentation is built (strict: a broken link or anchor fails) into the git-ignored site/.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
UV := $(VENV)/lock-tools/bin/uv
# uv trusts the machine's certificate store, as pip does.
export UV_SYSTEM_CERTS ?= 1
# PostgreSQL tests use this server; where it is unreachable they skip (CI makes them required).
export TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

# The lock: every dependency pinned with the hashes of all its files, resolved for CPython 3.11
# on Linux (x86_64; `make lock` checks aarch64 resolves the same, from wheels).
LOCK_FLAGS := --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' --quiet
LOCK_CHECK := --python-version 3.11 --no-header --no-annotate --quiet --only-binary :all:

.PHONY: run test setup lint lock clean messages

# Dependencies from the lock (hash-checked), then DeviceCare itself, editable, adding none.
$(STAMP): pyproject.toml requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check || (echo "requirements/*.txt miss a dependency: run make lock" >&2; exit 1)
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/devicecare serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MKDOCS) build --strict --site-dir site
	$(BIN)/pytest -q -n auto $(PYTEST_ARGS)

# The catalogues (docs/guides/translations.md): the English msgids of the templates and the
# code into locales/messages.pot, then every language's catalogue brought up to date with it.
# A new msgid arrives untranslated and a changed one fuzzy; the completeness test fails on
# both until a translator has filled them in.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --omit-header \
		--project DeviceCare -o locales/messages.pot .
	$(BIN)/pybabel update -i locales/messages.pot -d locales --ignore-obsolete --no-wrap \
		--ignore-pot-creation-date

# Regenerate requirements/runtime.txt (what a deployment installs: dependencies and the sentry
# extra) and requirements/test.txt (that plus the test extra, same pins) from pyproject.toml.
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra sentry $(LOCK_FLAGS) \
		--python-platform x86_64-manylinux_2_28 -o requirements/runtime.txt
	$(UV) pip compile pyproject.toml --extra sentry --extra test -c requirements/runtime.txt \
		$(LOCK_FLAGS) --python-platform x86_64-manylinux_2_28 -o requirements/test.txt
	$(UV) pip compile pyproject.toml --extra sentry --extra test $(LOCK_CHECK) \
		--python-platform x86_64-manylinux_2_28 -c requirements/test.txt -o $(VENV)/lock-x86_64.txt
	$(UV) pip compile pyproject.toml --extra sentry --extra test $(LOCK_CHECK) \
		--python-platform aarch64-manylinux_2_28 -c requirements/test.txt -o $(VENV)/lock-aarch64.txt
	cmp $(VENV)/lock-x86_64.txt $(VENV)/lock-aarch64.txt

# uv in an environment of its own, so a lock that misses a new dependency can still be remade.
$(UV):
	$(PYTHON) -m venv $(VENV)/lock-tools
	$(VENV)/lock-tools/bin/pip install --quiet 'uv>=0.5'

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
