"""saekit.dictionaries"""
