"""rollups"""
