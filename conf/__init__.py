"""Hydra configs; installed as the package `runner.conf` (Hydra: pkg://runner.conf)."""
