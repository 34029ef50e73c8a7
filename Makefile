# make test   create .venv, install everything (Debian packages too, as root), run ruff and pytest
# make demo   the same install, then an emulated testbed of 8 nodes loaded by multicast (root)
# make bench  the benchmarks of bench/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PACKAGES := $(shell grep -v '^\#' debian-packages.txt)

.PHONY: test demo bench lint system-packages clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

system-packages:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

lint: $(INSTALLED)
	$(BIN)/ruff check imaging tests bench inventory bin

test: system-packages $(INSTALLED) lint
	$(BIN)/pytest

DEMO := .demo
demo: system-packages $(INSTALLED)
	@if [ -d $(DEMO)/testbed ]; then $(BIN)/imaging-testbed down --dir $(DEMO)/testbed >/dev/null 2>&1 || true; fi
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	cd $(DEMO) && ../$(BIN)/imaging-testbed demo 8 --dir testbed

bench: system-packages $(INSTALLED)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/control.py
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .hypothesis *.egg-info
