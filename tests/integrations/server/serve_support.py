"""Shared data and helpers of the server tests (a plain module: `conftest` is not importable
by name when several test folders have one)."""

from __future__ import annotations

from rankbridge.integrations.server import ServeSettings, parse_reranker_option

API_KEY = "sk-serve-test-4f1c9a"

DOCS = [
    "Vitamin D supplements reduce the risk of bone fractures in older adults.",
    "The Eiffel Tower is in Paris.",
    "Fractures heal faster with calcium and vitamin D.",
    "Bananas are rich in potassium.",
    "Bone density falls with age; vitamin D slows the loss.",
]
QUERY = "does vitamin d reduce fractures"


def settings(*specs: str, **kwargs) -> ServeSettings:
    return ServeSettings(models=[parse_reranker_option(s) for s in specs], **kwargs)
