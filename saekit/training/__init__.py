"""saekit.training"""
