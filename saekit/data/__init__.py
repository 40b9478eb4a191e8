"""saekit.data"""
