"""saekit.report"""
