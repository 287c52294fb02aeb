"""Cookbook: rerank a LangChain retriever with rankbridge; swap the reranker by changing a config file.

Pipeline: SciFact -> Qdrant hybrid first stage (dense MiniLM + BM25, RRF) as a LangChain
retriever -> `RankbridgeCompressor`, composed with Runnables -> the top 5 documents, printed
with `metadata["relevance_score"]` (the reranker's) and `metadata["score"]` (the first
stage's). The same chain runs once per config file: the backend is chosen by the file alone.
`configs/cross-encoder.yaml` reranks with `minilm-l6-ce-scifact` (trained on SciFact train) on ONNX
Runtime, fused with the first stage at 0.5 (relative_score); without that model it says so and
uses the weak test model.

    python cookbooks/langchain_rerank.py
    python cookbooks/langchain_rerank.py --config cookbooks/configs/lexical.yaml

Needs: pip install 'rankbridge[langchain,qdrant,onnx]'; SciFact in
$RANKBRIDGE_DATA_DIR/beir/scifact; models under $RANKBRIDGE_MODEL_DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from rankbridge.integrations.langchain import RankbridgeCompressor
from scifact_first_stage import reranker_spec, scifact_first_stage

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIGS = [CONFIGS / "cross-encoder.yaml", CONFIGS / "lexical.yaml"]


def rerank_chain(retriever, compressor: RankbridgeCompressor):
    """query -> retriever -> compressor, as one Runnable (sync and async)."""
    return RunnableParallel(documents=retriever, query=RunnablePassthrough()) | RunnableLambda(
        lambda x: compressor.compress_documents(x["documents"], x["query"]),
        afunc=lambda x: compressor.acompress_documents(x["documents"], x["query"]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", type=Path, help="reranker config file (repeatable)")
    parser.add_argument("--depth", type=int, default=30, help="first-stage candidates handed to the reranker")
    parser.add_argument("--top-n", type=int, default=5, help="documents kept after reranking")
    args = parser.parse_args(argv)

    first_stage = scifact_first_stage()
    retriever = first_stage.retriever.as_langchain(limit=args.depth)
    for config in args.config or DEFAULT_CONFIGS:
        # The only line that knows about the reranker: a config file. The model loads on first use.
        spec, model = reranker_spec(config)
        compressor = RankbridgeCompressor(reranker=spec, top_n=args.top_n)
        chain = rerank_chain(retriever, compressor)
        queries = list(first_stage.queries.items())
        backend = compressor.get_reranker().config.backend + (f" {model}" if model else "")
        print(f"\n=== {config.name}: backend {backend}, top {args.top_n} of {args.depth} hybrid hits")
        for (query_id, query), documents in zip(queries, chain.batch([q for _, q in queries])):
            print(f"\nquery {query_id}: {query}")
            print(f"  {'rank':>4}  {'relevance':>9}  {'first stage':>11}  judged  doc")
            for rank, doc in enumerate(documents, start=1):
                judged = "yes" if first_stage.judged(query_id, doc.id) else ""
                title = (doc.metadata.get("title") or doc.page_content[:60]).replace("\n", " ")[:60]
                print(
                    f"  {rank:>4}  {doc.metadata['relevance_score']:>9.3f}  {doc.metadata['score']:>11.4f}  "
                    f"{judged:>6}  {doc.id}: {title}"
                )
    first_stage.retriever.close()


if __name__ == "__main__":
    main()
