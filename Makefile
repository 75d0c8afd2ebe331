# The two commands the README promises: `make demo` and `make test`.
# Both create .venv when it is missing and install the project with its pinned dependencies.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# System libraries the bpy wheel (headless Blender) and ffmpeg-based video I/O need on a bare Debian.
SYSLIBS := libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libosmesa6

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
	@missing=""; for p in $(SYSLIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing system libraries:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) $(BPY42_STAMP)
	$(BIN)/python -m pytest
	$(BPY42)/bin/python -m pytest tests/blender -p no:cacheprovider

$(BPY42_STAMP): Makefile
	@$(MAKE) --no-print-directory syslibs
	@test -x $(BPY42)/bin/python || $(PY) -m venv $(BPY42)
	@echo "== installing bpy 4.2 LTS into $(BPY42) for the Blender tests"
	$(BPY42)/bin/python -m pip install --quiet --disable-pip-version-check $(BPY42_PINS) 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $@

# The Blender extension zip (dist/mimo_blender-<version>.zip) with the pyzmq/msgpack wheels.
addon: $(STAMP)
	$(BIN)/python blender_addon/build.py

clean:
	rm -rf $(VENV) $(BPY42) build dist demo_out *.egg-info
