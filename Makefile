# Every target sets itself up first (scripts/setup.sh is quick when nothing changed).
.PHONY: setup demo info test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/acfd demo

info: setup
	.venv/bin/acfd info --preset acfd51 --input 640x640

test: setup
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python -m pytest -q benchmarks --benchmark-columns=min,mean,median,max,rounds

clean:
	rm -rf .venv build *.egg-info .pytest_cache .benchmarks
