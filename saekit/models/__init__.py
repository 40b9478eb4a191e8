"""saekit.models"""
