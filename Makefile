# make test   create .venv, install everything (Debian packages too, as root), run ruff, mypy and pytest
# make demo   the same install, then an emulated testbed of 8 nodes loaded by multicast (root)
# make demo-vm  the same, then 3 qemu VMs booting over PXE, loaded, saved (root; ~80 s under TCG)
# make bench  the benchmarks of bench/
# make frisbee  Emulab's frisbee programs, built from third_party/ (test, demo and bench do it)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PACKAGES := $(shell grep -v '^\#' debian-packages.txt)
VM_PACKAGES := $(shell grep -v '^\#' debian-packages-vm.txt)
TEST_PACKAGES := $(shell grep -v '^\#' debian-packages-test.txt)
# where the VM tier finds the Debian kernel package (unpacked by the testbed, never installed)
KERNEL_DIR := /var/cache/imaging-testbed

.PHONY: test demo demo-vm bench lint system-packages vm-packages test-packages frisbee clean

# apt-get install the packages given that are not installed yet
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

system-packages:
	$(call apt_install,$(PACKAGES))

# qemu, iPXE, SeaBIOS, and the kernel package of Debian's linux-image-amd64 (downloaded once)
KERNEL_NAME := apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$$/\1/p' | head -n 1
vm-packages: system-packages
	$(call apt_install,$(VM_PACKAGES))
	@if ! ls $(KERNEL_DIR)/linux-image-*-amd64_*.deb >/dev/null 2>&1; then \
	  kernel=$$($(KERNEL_NAME)); \
	  [ -n "$$kernel" ] || { apt-get update -q && kernel=$$($(KERNEL_NAME)); }; \
	  if [ -z "$$kernel" ]; then echo "vm-packages: apt knows no linux-image-amd64; check the Debian sources of apt" >&2; exit 1; fi; \
	  echo "downloading the Debian kernel package $$kernel into $(KERNEL_DIR)"; \
	  mkdir -p $(KERNEL_DIR) && cd $(KERNEL_DIR) && apt-get download -q $$kernel; \
	fi

# Emulab's frisbee programs, built from third_party/ into /var/cache/imaging-testbed/frisbee unless installed
frisbee: system-packages $(INSTALLED)
	$(BIN)/python -m imaging_testbed.frisbee

lint: $(INSTALLED)
	$(BIN)/ruff check imaging imaging_testbed tests bench inventory bin
	$(BIN)/mypy --strict imaging imaging_testbed

# what the tests use, in one apt run: the packages of the product and testbed, of the VM tier, and a browser
test-packages:
	$(call apt_install,$(PACKAGES) $(VM_PACKAGES) $(TEST_PACKAGES))

test: test-packages vm-packages $(INSTALLED) frisbee lint
	$(BIN)/pytest

DEMO := .demo
demo: system-packages $(INSTALLED) frisbee
	@if [ -d $(DEMO)/testbed ]; then $(BIN)/imaging-testbed down --dir $(DEMO)/testbed >/dev/null 2>&1 || true; fi
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	cd $(DEMO) && ../$(BIN)/imaging-testbed demo 8 --dir testbed

demo-vm: vm-packages $(INSTALLED) frisbee
	@if [ -d $(DEMO)/vm ]; then $(BIN)/imaging-testbed down --dir $(DEMO)/vm >/dev/null 2>&1 || true; fi
	@rm -rf $(DEMO)/vm && mkdir -p $(DEMO)
	cd $(DEMO) && ../$(BIN)/imaging-testbed demo 3 --vm --dir vm

bench: system-packages $(INSTALLED) frisbee
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/control.py
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .hypothesis *.egg-info
