# The two quick-start commands. Each sets up .venv itself (CPU torch first).
.PHONY: demo test setup

setup:
	bash scripts/setup_env.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/raysum train --mode full --models tiny-bart tiny-llama tiny-qwen3 --k_folds 2 --ensemble_strategy stacking --save_visualizations --experiment_name demo

test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests
