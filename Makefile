# Quick start on a fresh machine:  make demo   (sets up, renders the bundled living room)
#                                  make test   (sets up, runs the test suite)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.greybox-installed
DEMO_OUT ?= demo_out

.PHONY: setup demo test test-slow bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_environment.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup_environment.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/greybox render living_room --out $(DEMO_OUT) --stylizer npr --frames 1-24
	@echo "demo written to $(DEMO_OUT)/ (open review.html; video.mp4, contact_sheet.png, frames/, control/, passes/)"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

bench: $(STAMP)
	$(BIN)/python benchmarks/passes.py
	$(BIN)/python benchmarks/farm.py

clean-venv:
	rm -rf $(VENV)
