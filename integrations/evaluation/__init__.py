"""Evaluation: BEIR loading (`beir`), metrics and reranked runs (`metrics`)."""
