"""saekit.pipeline: the one place that orchestrates a comparison (train, evaluate, compare, verdict).

stats: hierarchical bootstrap over model and dictionary seeds, Holm correction, verdicts per axis.
"""
