# The two commands in README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The documentation is built (strict: a broken link or anchor fails) into the git-ignored site/.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
# PostgreSQL tests use this server; where it is unreachable they skip (CI makes them required).
export TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: run test setup lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/devicecare serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(MKDOCS) build --strict --site-dir site
	$(BIN)/pytest -q -n auto $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
