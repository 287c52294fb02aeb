"""Cookbook: rerank a LlamaIndex retriever with rankbridge; swap the reranker by changing a config file.

Pipeline: SciFact -> Qdrant hybrid first stage (dense MiniLM + BM25, RRF) as a LlamaIndex
retriever -> `RankbridgeRerank` in a `RetrieverQueryEngine` -> the top 5 nodes, printed with
their reranker relevance and first-stage score. The same code runs once per config file: the
backend is chosen by the file alone.
`configs/cross-encoder.yaml` reranks with `minilm-l6-ce-scifact` (trained on SciFact train) on ONNX
Runtime, fused with the first stage at 0.5 (relative_score); without that model it says so and
uses the weak test model.

    python cookbooks/llama_index_rerank.py
    python cookbooks/llama_index_rerank.py --config cookbooks/configs/lexical.yaml

Needs: pip install 'rankbridge[llama-index,qdrant,onnx]'; SciFact in
$RANKBRIDGE_DATA_DIR/beir/scifact; models under $RANKBRIDGE_MODEL_DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode

from rankbridge.integrations.llama_index import RankbridgeRerank
from scifact_first_stage import reranker_spec, scifact_first_stage

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIGS = [CONFIGS / "cross-encoder.yaml", CONFIGS / "lexical.yaml"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", type=Path, help="reranker config file (repeatable)")
    parser.add_argument("--depth", type=int, default=30, help="first-stage candidates handed to the reranker")
    parser.add_argument("--top-n", type=int, default=5, help="nodes kept after reranking")
    args = parser.parse_args(argv)

    first_stage = scifact_first_stage()
    retriever = first_stage.retriever.as_llama_index(limit=args.depth)
    for config in args.config or DEFAULT_CONFIGS:
        # The only line that knows about the reranker: a config file. The model loads on first use.
        # metadata_mode NONE: these nodes' text already starts with the title, which EMBED (the
        # default) would prepend again from the metadata.
        spec, _ = reranker_spec(config)  # the config file (or, said on the output, its weak-model stand-in)
        rerank = RankbridgeRerank(
            reranker=spec, top_n=args.top_n, keep_retrieval_score=True, metadata_mode=MetadataMode.NONE
        )
        # response_mode "no_text": retrieve and rerank, no LLM call (swap in your LLM's synthesizer).
        engine = RetrieverQueryEngine(retriever, response_synthesizer=NoText(llm=MockLLM()), node_postprocessors=[rerank])
        print(f"\n=== {config.name}: {rerank.reranker_model_name}, top {args.top_n} of {args.depth} hybrid hits")
        for query_id, query in first_stage.queries.items():
            response = engine.query(query)
            print(f"\nquery {query_id}: {query}")
            print(f"  {'rank':>4}  {'relevance':>9}  {'first stage':>11}  judged  doc")
            for rank, hit in enumerate(response.source_nodes, start=1):
                node = hit.node
                judged = "yes" if first_stage.judged(query_id, node.node_id) else ""
                title = (node.metadata.get("title") or node.get_content()[:60]).replace("\n", " ")[:60]
                print(
                    f"  {rank:>4}  {hit.score:>9.3f}  {node.metadata['retrieval_score']:>11.4f}  "
                    f"{judged:>6}  {node.node_id}: {title}"
                )
    first_stage.retriever.close()


if __name__ == "__main__":
    main()
