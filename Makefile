# Korean instruction tuning of Llama-3 (reproduction of werty1248/Llama-3-Ko-8B-Instruct-AOG).
# `make` or `make help` lists the targets. Every target creates the virtual environment first.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
AXOLOTL := $(VENV)/bin/axolotl
TORCH_CUDA ?=
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-8)$(if $(TORCH_CUDA),-$(TORCH_CUDA))
# Axolotl's launcher execs `accelerate` from PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export AXOLOTL_DO_NOT_TRACK := 1

SOURCE ?= hub
SEED ?=
SYSTEM_RATE ?=
DATA_DIR ?=
DECONTAMINATE ?=
CONFIG ?= axolotl_configs/aog-lora.yml
NGPUS ?= 1
NNODES ?= 1
NODE_RANK ?= 0
MAIN_ADDR ?=
MAIN_PORT ?= 29500
RESUME ?=
OVERWRITE ?=
KEEP_ACCUMULATION ?=
TRACK ?=
HF_REPO ?=
MERGED ?=
PRIVATE ?=
DRY_RUN ?=
ifneq ($(filter train,$(MAKECMDGOALS)),)
  ifneq ($(shell echo '$(NGPUS) $(NNODES) $(NODE_RANK)' | grep -xE '[1-9][0-9]* [1-9][0-9]* [0-9]+'),)
  else
    $(error NGPUS and NNODES must be whole numbers >= 1 and NODE_RANK >= 0, got NGPUS=$(NGPUS) NNODES=$(NNODES) NODE_RANK=$(NODE_RANK))
  endif
endif
PROCS = $(shell echo $$(( $(NGPUS) * $(NNODES) )))
DEEPSPEED ?= $(if $(filter-out 1,$(PROCS)),axolotl_configs/deepspeed/zero2.json)
# accelerate's own launch arguments; Axolotl passes everything after `--` to it.
LAUNCH = --num_processes $(PROCS) $(if $(filter-out 1,$(PROCS)),--multi_gpu) \
  $(if $(filter-out 1,$(NNODES)),--num_machines $(NNODES) --machine_rank $(NODE_RANK) \
  --main_process_ip $(MAIN_ADDR) --main_process_port $(MAIN_PORT))
ALL_CONFIGS := $(wildcard axolotl_configs/*.yml axolotl_configs/ablations/*.yml)
DEMO := outputs/demo
MODEL ?=
ADAPTER ?=
KOBEST_DATA ?=
TASKS ?=
EVAL_DATA ?=
BATCH ?=
CONFIGS ?=
LIMIT ?=
Q ?=
FORMAT ?= card
GPU ?=
TINY ?=
ONLY ?=
WHEELHOUSE ?= wheelhouse
# What a bare GPU box (Python, torch, transformers, peft, accelerate: see README) lacks for
# make train / make merge; `make wheelhouse` fetches these as platform wheels for its Python.
GPU_BOX_PYTHON ?= 3.12
GPU_CHECK_OUT ?= outputs/gpu-check$(if $(filter 1,$(TINY)),-tiny)

ifeq ($(SOURCE),sample)
  DATA_FLAGS := --sample
else ifneq ($(SOURCE),hub)
  $(error SOURCE must be 'hub' (default) or 'sample', got '$(SOURCE)')
endif
DATA_FLAGS += $(if $(DATA_DIR),--output-dir $(DATA_DIR)) \
  $(if $(filter 1,$(DECONTAMINATE)),--decontaminate $(if $(KOBEST_DATA),--kobest-dir $(KOBEST_DATA)))

.DEFAULT_GOAL := help
.PHONY: help venv flash-attn data check preflight train merge card push ollama loss eval compare chat demo test \
  test-fast bench \
  gpu-check gpu-venv wheelhouse clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SOURCE=hub|sample SEED=<n> SYSTEM_RATE=<p> (default 42 and 0.8: preprocess/) DATA_DIR=<dir>"
	@echo "             CONFIG=$(CONFIG) NGPUS=$(NGPUS) DEEPSPEED=<json> (zero2 when NGPUS>1)"
	@echo "             RESUME=1 OVERWRITE=1 KEEP_ACCUMULATION=1 NNODES=<n> NODE_RANK=<i> MAIN_ADDR=<ip> MAIN_PORT=<port>"
	@echo "             MODEL=<dir|hub id> ADAPTER=<dir> (default: the run of CONFIG) KOBEST_DATA=<dir> (data, preflight)"
	@echo "             TASKS=kobest,kmmlu,haerae,behaviour EVAL_DATA=<dir> LIMIT=<n> BATCH=auto|<n> (make eval)"
	@echo "             CONFIGS=\"<config> <config> ...\" (make compare)"
	@echo "             Q=<question> FORMAT=card|alpaca TRACK=wandb|mlflow"
	@echo "             HF_REPO=<user>/<name> MERGED=1 PRIVATE=1 DRY_RUN=1 (make push)"
	@echo "             GPU=a100|h100 (make check)"
	@echo "             TORCH_CUDA=cpu|cu126|cu128|cu130 (default: from the NVIDIA driver) TINY=1 ONLY=card,... (make gpu-check)"
	@echo "             DECONTAMINATE=1 (make data: also a copy without rows that contain KoBEST test texts)"

# The stamp's name carries the requirements' hash: a changed file reinstalls, a touched one does not.
$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, alone: the CUDA build the NVIDIA driver supports, or the CPU build without one.
	python3 -m training.torch_build install $(PY) $(TORCH_CUDA)
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv with the pinned requirements (done by every target) [TORCH_CUDA=...]

flash-attn: $(STAMP) ## Optional: build flash-attn for the card's attention (CUDA toolkit; up to an hour)
	@echo "flash-attn has no wheel on PyPI: pip fetches a prebuilt one from GitHub if one matches torch and CUDA," \
	  "else it compiles with nvcc (CUDA_HOME; about an hour). Without it, make train uses sdpa." >&2
	$(PY) -m pip install psutil ninja packaging
	MAX_JOBS=$${MAX_JOBS:-4} $(PY) -m pip install --no-build-isolation flash-attn==2.8.3

data: $(STAMP) ## Build the Alpaca JSONL files (SOURCE=sample: offline) [DECONTAMINATE=1 [KOBEST_DATA=dir]]
	$(PY) -m preprocess $(DATA_FLAGS) $(if $(SEED),--seed $(SEED)) $(if $(SYSTEM_RATE),--system-rate $(SYSTEM_RATE))

check: $(STAMP) ## Validate configs with Axolotl + unknown-key check (all, or CONFIG=...) [GPU=a100|h100]
	$(PY) -m training.config check $(if $(filter command line,$(origin CONFIG)),$(CONFIG),$(ALL_CONFIGS)) \
	  $(if $(GPU),--gpu $(GPU) --gpus $(PROCS))

preflight: $(STAMP) ## Data card, KoBEST overlap, manifest, time/memory estimate: CONFIG=... [KOBEST_DATA=dir] (tokenizes once, for train too)
	$(PY) -m training.preflight $(CONFIG) \
	  $(if $(KOBEST_DATA),--kobest-dir $(KOBEST_DATA))

train: $(STAMP) ## LoRA training: CONFIG=... NGPUS=N [RESUME=1|OVERWRITE=1] (tokenizes once, then accelerate)
	@test "$(NNODES)" = 1 || test -n "$(MAIN_ADDR)" || { echo "error: NNODES=$(NNODES) needs MAIN_ADDR=<IP of node 0>, \
	  and NODE_RANK=<0..$(NNODES)-1> on each node" >&2; exit 2; }
	trap : INT TERM; cfg=$$($(PY) -m training.run train $(CONFIG) --gpus $(PROCS) $(if $(filter 1,$(RESUME)),--resume) \
	  $(if $(filter 1,$(OVERWRITE)),--overwrite) $(if $(filter 1,$(KEEP_ACCUMULATION)),--keep-accumulation) \
	  $(if $(TRACK),--track $(TRACK)) $(if $(DEEPSPEED),--deepspeed $(DEEPSPEED)) --node-rank $(NODE_RANK)) || exit 2; \
	TOKENIZERS_PARALLELISM=false $(AXOLOTL) train "$$cfg" --launcher accelerate -- $(LAUNCH); rc=$$?; \
	test $(NODE_RANK) != 0 && exit $$rc; \
	$(PY) -m publishing.publish loss "$$cfg" || true; \
	test $$rc = 0 || exit $$rc; $(PY) -m training.run finish-train "$$cfg"

merge: $(STAMP) ## Merge the trained adapter of CONFIG into its base: <output_dir>/merged
	cfg=$$($(PY) -m training.run merge $(CONFIG)) && $(AXOLOTL) merge-lora "$$cfg" && \
	$(PY) -m training.run finish-merge "$$cfg"

card: $(STAMP) ## Model card <output_dir>/README.md from the run's record, data reports and eval [MERGED=1]
	$(PY) -m publishing.card $(CONFIG) $(if $(filter 1,$(MERGED)),--merged)

push: $(STAMP) ## Upload the run to the Hub with its card: HF_REPO=user/name [MERGED=1] [PRIVATE=1] [DRY_RUN=1]
	@test -n "$(HF_REPO)" || { echo "error: set HF_REPO=<user or org>/<name>, the Hub repo to upload to" >&2; exit 2; }
	$(PY) -m publishing.publish push $(CONFIG) --repo $(HF_REPO) $(if $(filter 1,$(MERGED)),--merged) \
	  $(if $(filter 1,$(PRIVATE)),--private) $(if $(filter 1,$(DRY_RUN)),--dry-run)

ollama: $(STAMP) ## Ollama Modelfile for the merged model (card prompt, <|end_of_text|> stop): <output_dir>/merged/Modelfile
	$(PY) -m publishing.publish ollama $(CONFIG)

loss: $(STAMP) ## Plot <output_dir>/loss.png from the run's newest checkpoint (make train does it too)
	$(PY) -m publishing.publish loss $(CONFIG)

eval: $(STAMP) ## Benchmarks (TASKS=kobest default; kmmlu, haerae, behaviour) on the run of CONFIG (or MODEL=...) [EVAL_DATA=dir]
	@test -z "$(KOBEST_DATA)" || { echo "error: make eval reads local data from EVAL_DATA=<dir> with <dir>/kobest/<task>/..." \
	  "(KOBEST_DATA is the KoBEST folder of make data and make preflight)" >&2; exit 2; }
	$(PY) -m evaluation.harness --config $(CONFIG) $(if $(MODEL),--model $(MODEL)) $(if $(ADAPTER),--adapter $(ADAPTER)) \
	  $(if $(TASKS),--tasks "$(TASKS)") $(if $(EVAL_DATA),--data-dir "$(EVAL_DATA)") $(if $(LIMIT),--limit "$(LIMIT)") \
	  $(if $(BATCH),--batch-size "$(BATCH)")

compare: $(STAMP) ## Eval results side by side: CONFIGS="a.yml b.yml [outputs/eval/<model>]" -> outputs/compare.{md,png}
	@test -n "$(CONFIGS)" || { echo "error: set CONFIGS=\"<config> <config> ...\", the runs to compare" >&2; exit 2; }
	$(PY) -m evaluation.compare $(CONFIGS)

# The question reaches Python through the environment, so quotes, $ and backticks stay text
# (and make does not expand it: `value` takes Q as typed).
chat: override export Q := $(value Q)
chat: $(STAMP) ## Chat in the card's format with the run of CONFIG (or MODEL=... [ADAPTER=...]) [Q="one question"]
	$(PY) -m evaluation.chat $(MODEL) --config $(CONFIG) $(if $(ADAPTER),--adapter $(ADAPTER)) \
	  --format $(FORMAT) $(if $(Q),--question "$$Q")

demo: export HF_HUB_OFFLINE := 1
demo: export HF_DATASETS_OFFLINE := 1
demo: $(STAMP) ## Offline end-to-end demo on CPU: sample data, tiny Llama, train, merge, chat, eval
	$(MAKE) --no-print-directory data SOURCE=sample DATA_DIR=$(DEMO)/data
	$(PY) -m training.tiny_model $(DEMO)/tiny-llama
	$(PY) -m training.config cpu $(CONFIG) --model $(DEMO)/tiny-llama --data-dir $(DEMO)/data --out $(DEMO)
	$(PY) -m training.preflight $(DEMO)/axolotl.yml --kobest-dir data/eval-sample/kobest --out $(DEMO)/preflight
	$(MAKE) --no-print-directory train CONFIG=$(DEMO)/axolotl.yml OVERWRITE=1
	$(MAKE) --no-print-directory merge CONFIG=$(DEMO)/axolotl.yml
	$(PY) -m evaluation.chat --config $(DEMO)/axolotl.yml --question "김치를 오래 보관하려면 어떻게 해야 하나요?" \
	  --max-new-tokens 24 --show-prompt
	$(PY) -m evaluation.harness --model $(DEMO)/tiny-llama --adapter $(DEMO)/lora --data-dir data/eval-sample \
	  --tasks kobest,kmmlu_humss,haerae,behaviour --max-new-tokens 128 --out $(DEMO)/lora/eval

test: $(STAMP) ## Run the whole test suite (offline, CPU)
	$(PY) -m pytest -q

test-fast: $(STAMP) ## The tests that need no end-to-end run (seconds)
	$(PY) -m pytest -q -m "not e2e"

bench: export HF_HUB_OFFLINE := 1
bench: export HF_DATASETS_OFFLINE := 1
bench: $(STAMP) ## Conversion, tokenization and preflight timed at the real sizes -> docs/benchmarks.md
	$(PY) -m benchmarks.data_path --write docs/benchmarks.md

gpu-check: export HF_HUB_OFFLINE := 1
gpu-check: export HF_DATASETS_OFFLINE := 1
gpu-check: $(if $(wildcard $(PY)),$(STAMP),$(if $(wildcard $(WHEELHOUSE)/*.whl),gpu-venv,$(STAMP))) ## One GPU box, no network: train+merge random 8B models, table to docs/benchmarks.md [TINY=1: CPU] [ONLY=card,...]
	$(PY) -m training.gpu_check $(if $(filter 1,$(TINY)),--tiny) --out $(GPU_CHECK_OUT) $(if $(ONLY),--only $(ONLY))

gpu-venv: ## (On a GPU box with no network) .venv = the box's own packages + $(WHEELHOUSE)/
	# The box's python3 may itself be a venv, whose packages --system-site-packages would not see:
	# its site folders are read before .venv/bin (first on PATH) exists, and added by a .pth file.
	rm -rf $(VENV); sites=$$(python3 -c "import site; print(site.getsitepackages())") && \
	{ python3 -m venv $(VENV) 2>/dev/null || python3 -m venv --without-pip $(VENV); } && \
	echo "import site; list(map(site.addsitedir, $$sites))" \
	  > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/gpu-box.pth"
	# A Python without ensurepip gives a venv without pip: the box's own pip installs into it.
	if $(PY) -m pip --version >/dev/null 2>&1; then pip="$(PY) -m pip"; else pip="python3 -m pip --python $(PY)"; fi; \
	$$pip install --quiet --no-index --no-deps --no-compile $(WHEELHOUSE)/*.whl
	touch $(STAMP)

wheelhouse: ## (Online) wheels a bare GPU box lacks, for its Python $(GPU_BOX_PYTHON): $(WHEELHOUSE)/
	rm -rf $(WHEELHOUSE)
	python3 -m training.wheelhouse $(WHEELHOUSE) --python $(GPU_BOX_PYTHON)

clean: ## Remove built data and outputs (keeps .venv)
	rm -rf data/processed data/processed-sample data/processed-nosys data/processed-decontaminated \
	  data/processed-sample-decontaminated data/prepared outputs last_run_prepared $(WHEELHOUSE)
