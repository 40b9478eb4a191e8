"""Orchestration: steps that train and then evaluate (the one place that does both)."""
