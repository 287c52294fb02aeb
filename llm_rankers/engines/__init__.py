"""How the LLM rankers reach a model: `chat` (the chat protocol and its result types),
`openai_http` (the OpenAI-compatible HTTP client), `vllm_inprocess` (the in-process vLLM engine),
and `vllm_process` (a launcher for a local vLLM server process)."""
