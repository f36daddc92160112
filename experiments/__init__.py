"""Experiment presets; installed as `runner.experiments` (selected with +experiment=NAME)."""
