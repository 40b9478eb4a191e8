"""saekit.evaluation"""
