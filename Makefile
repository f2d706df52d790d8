# Korean instruction tuning of Llama-3 (reproduction of werty1248/Llama-3-Ko-8B-Instruct-AOG).
# `make` or `make help` lists the targets. Every target creates the virtual environment first.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-8)

SOURCE ?= hub
SEED ?= 42
SYSTEM_RATE ?= 0.8
ifeq ($(SOURCE),sample)
  DATA_FLAGS := --sample
else ifneq ($(SOURCE),hub)
  $(error SOURCE must be 'hub' (default) or 'sample', got '$(SOURCE)')
endif

export AXOLOTL_DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help venv data demo test bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: SOURCE=hub|sample  SEED=$(SEED)  SYSTEM_RATE=$(SYSTEM_RATE)"

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, alone: the pin takes the local CPU wheel here and the CUDA build on a GPU box.
	$(PY) -m pip install --quiet "$$(grep -E '^torch==' requirements.txt)"
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv with the pinned requirements (done by every target)

data: $(STAMP) ## Build the three Alpaca JSONL files (SOURCE=sample: offline, from data/sample/)
	$(PY) -m preprocess $(DATA_FLAGS) --seed $(SEED) --system-rate $(SYSTEM_RATE)

demo: $(STAMP) ## Offline end-to-end demo on CPU (sample data)
	$(MAKE) --no-print-directory data SOURCE=sample

test: $(STAMP) ## Run the test suite (offline, CPU)
	$(PY) -m pytest -q tests

bench: $(STAMP) ## Preprocessing throughput on synthetic sources of the real sizes
	$(PY) -m benchmarks.preprocess_throughput

clean: ## Remove built data (keeps .venv)
	rm -rf data/processed data/processed-sample
