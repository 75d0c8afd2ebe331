# The two commands the README promises: `make demo` and `make test`.
# Both create .venv when it is missing and install the project with its pinned dependencies.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Debian packages the bpy wheel (headless Blender) needs on a bare system; `make test` also needs
# Mesa's off-screen OpenGL for the motion-code fidelity tests. `make syslibs` installs only the
# missing ones, and never upgrades an installed package: it simulates the install first (apt-get -s)
# and stops, saying which installed packages apt would upgrade, unless ALLOW_APT_UPGRADE=1 (set on
# CI, whose machines are throw-away). SYSLIBS_SIMULATE=1 prints the plan and installs nothing.
SYSLIBS      := libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1
TEST_SYSLIBS := libosmesa6
ALLOW_APT_UPGRADE ?= $(if $(CI),1,)
APT_LOG := build/apt-get.log

# Blender 4.2 LTS (the oldest the add-on supports) runs tests/blender in a second, light venv.
BPY42   := .venv-bpy42
BPY42_STAMP := $(BPY42)/.installed
BPY42_PINS  := bpy==4.2.23 numpy==1.26.4 pytest==9.2.0 pytest-timeout==2.4.0 pyzmq==27.3.0 msgpack==1.2.4

.PHONY: demo test setup syslibs clean addon

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory syslibs
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "== installing mimo-blender and pinned dependencies into $(VENV)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $(STAMP)

syslibs:
	@missing=$$(for p in $(SYSLIBS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done | xargs); \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	simulate() { apt-get -s install --no-install-recommends $$missing 2>/dev/null | grep '^Inst ' || true; }; \
	plan=$$(simulate); \
	if [ -z "$$plan" ]; then $$SUDO apt-get update -qq >/dev/null 2>&1 || true; plan=$$(simulate); fi; \
	if [ -z "$$plan" ]; then echo "== apt-get cannot install the missing system packages: $$missing (install them yourself)"; exit 1; fi; \
	new=$$(echo "$$plan" | { grep -v '^Inst [^ ]* \[' || true; } | cut -d' ' -f2 | xargs); \
	upgrades=$$(echo "$$plan" | { grep '^Inst [^ ]* \[' || true; } | cut -d' ' -f2 | xargs); \
	echo "== system packages missing: $$missing"; \
	echo "   apt-get would install: $$new"; \
	if [ -n "$$upgrades" ]; then \
	  echo "   and UPGRADE these installed packages: $$upgrades"; \
	  if [ "$(ALLOW_APT_UPGRADE)" != 1 ]; then \
	    echo "   not done: install the missing packages yourself (apt-get install --no-install-recommends $$missing)"; \
	    echo "   or run again with ALLOW_APT_UPGRADE=1"; exit 1; fi; \
	fi; \
	if [ "$(SYSLIBS_SIMULATE)" = 1 ]; then echo "   (SYSLIBS_SIMULATE=1: nothing installed)"; exit 0; fi; \
	mkdir -p $$(dirname $(APT_LOG)); \
	echo "   installing (apt-get's output: $(APT_LOG))"; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >$(APT_LOG) 2>&1 \
	  || { tail -n 20 $(APT_LOG); echo "== apt-get install failed (full output: $(APT_LOG))"; exit 1; }

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) $(BPY42_STAMP)
	@$(MAKE) --no-print-directory syslibs SYSLIBS="$(TEST_SYSLIBS)"
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	$(BPY42)/bin/python -m pytest tests/blender -p no:cacheprovider

$(BPY42_STAMP): Makefile
	@$(MAKE) --no-print-directory syslibs
	@test -x $(BPY42)/bin/python || $(PY) -m venv $(BPY42)
	@echo "== installing bpy 4.2 LTS into $(BPY42) for the Blender tests"
	$(BPY42)/bin/python -m pip install --quiet --disable-pip-version-check $(BPY42_PINS) 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $@

# The Blender extension zip (dist/mimo_blender-<version>.zip) with the pyzmq/msgpack wheels. Needs
# only Python and pip (a bare venv in build/), not the development environment.
ADDON_VENV := build/addon-venv
addon:
	@test -x $(ADDON_VENV)/bin/python || $(PY) -m venv $(ADDON_VENV)
	$(ADDON_VENV)/bin/python blender_addon/build.py

clean:
	rm -rf $(VENV) $(BPY42) build dist demo_out *.egg-info
