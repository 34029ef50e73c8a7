# make test   create .venv, install everything (Debian packages too, as root), run ruff and pytest
# make demo   the same install, then a short demonstration
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
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/images
	@printf '[testbed]\ninventory = %s\n[images]\nimages_dir = %s\n' \
	  "$(CURDIR)/inventory/sample-inventory.json" "$(CURDIR)/$(DEMO)/images" > $(DEMO)/imaging.conf
	@truncate -s 64M $(DEMO)/images/ubuntu-24.ndz && truncate -s 12M $(DEMO)/images/fedora-40.img.zst
	@ln -s ubuntu-24.ndz $(DEMO)/images/default.ndz
	@cd $(DEMO) && truncate -s 3M 'saving__fit03__2026-11-25@09-30__my-experiment.ndz'
	cd $(DEMO) && IMAGING_CONFIG=imaging.conf ../$(BIN)/imaging-main nodes 1-12 fit15-reboot18 '~4-6'
	cd $(DEMO) && IMAGING_CONFIG=imaging.conf ../$(BIN)/imaging-list
	cd $(DEMO) && IMAGING_CONFIG=imaging.conf ../$(BIN)/imaging-main resolve my-experiment

bench: system-packages $(INSTALLED)
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .hypothesis *.egg-info
