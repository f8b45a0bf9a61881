# Two commands do all the set-up: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv and install the project into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHELL := /bin/bash

.PHONY: setup demo test test-fast lint format perf clean

setup: $(STAMP)

# fairseq-fixed is built against the torch already in the venv (no build isolation, which would
# download a CUDA torch) and installed without its declared deps (torchaudio has no build for
# torch 2.13); its real runtime needs are listed in requirements.txt. See README "Dependencies".
$(STAMP): setup.py requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install "torch==2.13.0" cython numpy setuptools wheel
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --no-deps --no-build-isolation "fairseq-fixed==0.12.3.1"
	$(PY) -m pip install --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_output

# Everything (what .ci/run calls).
test: $(STAMP)
	$(PY) -m pytest tests -ra

# The edit-test loop: every test but the slow ones (real fairseq-hydra-train runs, long benchmarks).
test-fast: $(STAMP)
	$(PY) -m pytest tests -ra -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Speed and memory benchmarks, "perf" (goodviews-perf, fairseq_goodviews/perf; not the Table 1
# benchmark, which is goodviews-benchmark): each prints its ratios side by side in one run and
# writes JSON under demo_output/perf.
PERF := demo_output/perf
perf: $(STAMP)
	$(VENV)/bin/goodviews-perf record-loading --out $(PERF)
	$(VENV)/bin/goodviews-perf preprocessing --out $(PERF)
	$(VENV)/bin/goodviews-perf corpus-scale --out $(PERF) --subjects 1000
	$(VENV)/bin/goodviews-perf partner-index --out $(PERF)
	$(VENV)/bin/goodviews-perf augmentation --out $(PERF)
	$(VENV)/bin/goodviews-perf positives-at-scale --out $(PERF)
	$(VENV)/bin/goodviews-perf optimizer-step --out $(PERF)
	test -f $(PERF)/chapman/train.tsv || ( $(VENV)/bin/goodviews-synthetic-chapman $(PERF)/chapman_src --records 1000 --seed 0 \
		&& $(VENV)/bin/goodviews-prepare-chapman $(PERF)/chapman_src $(PERF)/chapman --workers 2 --pack )
	OMP_NUM_THREADS=1 $(VENV)/bin/goodviews-perf training-throughput --data $(PERF)/chapman --out $(PERF)
	$(VENV)/bin/goodviews-perf loader --data $(PERF)/chapman --out $(PERF)
	test -f $(PERF)/ptbxl/train.tsv || ( $(VENV)/bin/goodviews-synthetic-ptbxl $(PERF)/ptbxl_src --patients 150 --workers 2 \
		&& $(VENV)/bin/goodviews-prepare-ptbxl $(PERF)/ptbxl_src $(PERF)/ptbxl --workers 2 --no-attributes --no-progress )
	$(VENV)/bin/goodviews-perf loader --data $(PERF)/ptbxl --out $(PERF) --versus-encodings --workers 0
	$(VENV)/bin/goodviews-perf run-start --data $(PERF)/chapman --out $(PERF)
	$(VENV)/bin/goodviews-perf flops --out $(PERF)

clean:
	rm -rf $(VENV) demo_output
