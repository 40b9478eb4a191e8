"""saekit.activations"""
