# Every target sets itself up first (scripts/setup.sh is quick when nothing changed).
.PHONY: setup demo info lint test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/acfd demo

info: setup
	.venv/bin/acfd info --preset acfd51 --input 640x640

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python -m pytest -q benchmarks --benchmark-columns=min,mean,median,max,rounds

clean:
	rm -rf .venv build *.egg-info .pytest_cache .benchmarks
