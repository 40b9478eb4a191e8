"""saekit.io"""
