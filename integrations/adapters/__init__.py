"""What the LlamaIndex and LangChain adapters share: building candidates from framework objects and
the lazily loaded reranker behind a spec."""
