# edge-ser: the two commands a newcomer needs are `make demo` and `make test`.
#
# Environments (created on demand; a stamp file per venv makes re-runs instant until
# a requirements file or pyproject.toml changes):
#   .venv         the device runtime: requirements-edge.txt (numpy + interpreter + pyaudio)
#   .venv-dev     the workstation: TensorFlow, librosa, scipy, pytest (requirements-dev.txt)
#   .venv-litert  LiteRT on numpy 2 (requirements-litert.txt), for the backend parity test;
#                 also holds tflite-runtime (no deps) so the tests can check the error a
#                 user gets when tflite-runtime meets numpy 2.

PYTHON ?= python3
PYTEST_ARGS ?= -q
SHELL := /bin/bash

EDGE_VENV := .venv
DEV_VENV := .venv-dev
LITERT_VENV := .venv-litert
STAMP := .edge-ser-installed
MODEL := models/edge-ser-int8.tflite
APT_PACKAGES := portaudio19-dev alsa-utils libasound2-plugins espeak-ng sox python3-venv
# only the test suite needs these: a real MQTT broker and a headless browser for the dashboard
APT_TEST_PACKAGES := mosquitto chromium shellcheck

.PHONY: help system-deps test-system-deps edge-env dev-env litert-env demo test fuzz examples clean-venvs

help:
	@echo "make demo         install what is missing, then classify the example clips"
	@echo "make test         install what is missing, then run the test suite"
	@echo "make system-deps  apt packages: $(APT_PACKAGES)"
	@echo "                  (make test also installs: $(APT_TEST_PACKAGES))"
	@echo "make edge-env | dev-env | litert-env   create one virtual environment"
	@echo "make examples     re-synthesize examples/*.wav (espeak-ng + sox)"
	@echo "make fuzz         fuzz the WAV reader, load_audio, classify and the HTTP server for FUZZ_SECONDS"
	@echo "                  (default $(FUZZ_SECONDS), shared by the targets); findings in fuzz/findings/"

# Installs only what is missing, so it is silent and offline on a prepared machine.
define apt_install
	@missing=""; \
	for pkg in $(1); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then echo "system packages: all present"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "missing system packages:$$missing (no apt-get here: install them with your package manager)" >&2; exit 1; \
	fi; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then sudo="sudo"; fi; \
	echo "installing system packages:$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing
endef

system-deps:
	$(call apt_install,$(APT_PACKAGES))

test-system-deps: system-deps
	$(call apt_install,$(APT_TEST_PACKAGES))

edge-env: $(EDGE_VENV)/$(STAMP)
dev-env: $(DEV_VENV)/$(STAMP)
litert-env: $(LITERT_VENV)/$(STAMP)

# pip runs inside `set -e` recipes: a failed install leaves no stamp, so the next run retries.
$(EDGE_VENV)/$(STAMP): requirements-edge.txt pyproject.toml | system-deps
	test -x $(EDGE_VENV)/bin/python || $(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-edge.txt
	$(EDGE_VENV)/bin/python -m pip install -q --disable-pip-version-check -e . --no-deps
	touch $@

$(DEV_VENV)/$(STAMP): requirements-dev.txt requirements-edge.txt pyproject.toml | system-deps
	test -x $(DEV_VENV)/bin/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(DEV_VENV)/bin/python -m pip install -q --disable-pip-version-check -e . --no-deps
	touch $@

$(LITERT_VENV)/$(STAMP): requirements-litert.txt pyproject.toml | system-deps
	test -x $(LITERT_VENV)/bin/python || $(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-litert.txt
	$(LITERT_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps tflite-runtime==2.14.0
	$(LITERT_VENV)/bin/python -m pip install -q --disable-pip-version-check -e . --no-deps
	touch $@

demo: edge-env
	@if [ ! -f "$(MODEL)" ]; then \
	  echo "make demo: $(MODEL) is not there yet. It is produced by the training pipeline" >&2; \
	  echo "(see README, 'Training'); or point EDGE_SER_MODEL at a model and run:" >&2; \
	  echo "  $(EDGE_VENV)/bin/edge-ser classify examples/" >&2; \
	  exit 1; \
	fi
	$(EDGE_VENV)/bin/edge-ser info $(MODEL)
	@echo
	$(EDGE_VENV)/bin/edge-ser classify --model $(MODEL) --top-k 3 examples/

# pytest exits 5 when it collected no tests; that must fail, not pass as "nothing wrong".
test: test-system-deps dev-env litert-env
	@status=0; $(DEV_VENV)/bin/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" = 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# A long campaign (make test runs each target briefly): executions and findings are printed at the
# end, each finding's input, hex dump and traceback are in fuzz/findings/TARGET/. Exit 1 if anything
# was found. On a shared machine: nice -n 10 make fuzz.
FUZZ_SECONDS ?= 600
fuzz: dev-env
	$(DEV_VENV)/bin/python -m fuzz --seconds $(FUZZ_SECONDS)

examples:
	bash examples/make_examples.sh

clean-venvs:
	rm -rf $(EDGE_VENV) $(DEV_VENV) $(LITERT_VENV)
