"""The Hydra application behind `python -m runner`: composes `conf/`, runs a task, tracks it in MLflow."""
