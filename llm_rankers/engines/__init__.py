"""How the LLM rankers reach a model: the chat protocol, the OpenAI-compatible HTTP client, the
in-process vLLM engine, and a launcher for a local vLLM server process."""
