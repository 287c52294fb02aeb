"""Helpers the tests share: tiny data files, rendered pages, and test doubles (each named as one)."""
