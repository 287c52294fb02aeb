"""One module per `backend:` name. A backend imports `core`, `runtime` and `pages`, never another
backend; the registry (`rankbridge.rerankers.core.registry`) maps each name to its class."""
