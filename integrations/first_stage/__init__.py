"""The first stage: Qdrant hybrid retrieval (embedded or a server), its dense and BM25 embedders,
and the framework retriever wrappers."""
