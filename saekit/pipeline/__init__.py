"""saekit.pipeline: orchestration across model variants (train → evaluate → compare → report).

``saekit.pipeline.crosscoder.run_crosscoder``: one crosscoder over several variants.
"""
