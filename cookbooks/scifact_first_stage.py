"""The first stage both cookbooks share: SciFact (BEIR) in an embedded Qdrant hybrid index.

To keep a cookbook run under a minute on a laptop CPU, it indexes a subset of the corpus:
every document judged for the first `num_queries` test queries, plus distractors in corpus
order up to `num_docs`. The index lives under ``$RANKBRIDGE_CACHE_DIR/stores`` and is built
once; later runs reuse it. Use ``rankbridge index --beir ...`` for the full corpus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rankbridge.integrations.evaluation.beir import BeirDataset, load_beir
from rankbridge.integrations.first_stage.qdrant import HybridRetriever
from rankbridge.rerankers.core.paths import cache_dir, data_dir, is_local, resolve_model

logger = logging.getLogger(__name__)

TRAINED_MODEL = "minilm-l6-ce-scifact"  # what cookbooks/configs/cross-encoder.yaml names
WEAK_MODEL = "minilm-l6-ce-weak"


def reranker_spec(config: Path) -> tuple[str | dict[str, Any], str]:
    """The config file to rerank with, and the model it reranks with. When it names the trained
    SciFact model and that is not installed, the same config with the weak test model instead,
    said on the output (never silently)."""
    data = yaml.safe_load(config.read_text())
    if not isinstance(data, dict) or data.get("backend") != "cross-encoder":
        return str(config), ""
    model = str(data.get("model", ""))
    if model == TRAINED_MODEL and not is_local(resolve_model(model)) and is_local(resolve_model(WEAK_MODEL)):
        print(
            f"note: {TRAINED_MODEL} is not under $RANKBRIDGE_MODEL_DIR; {config.name} reranks with {WEAK_MODEL} "
            "instead, a deliberately weak test model (expect no lift)"
        )
        return {**data, "model": WEAK_MODEL}, WEAK_MODEL
    return str(config), model


@dataclass
class FirstStage:
    retriever: HybridRetriever
    dataset: BeirDataset
    queries: dict[str, str]  # query id -> text: the queries a cookbook asks

    def judged(self, query_id: str, doc_id: str) -> bool:
        """Whether SciFact's qrels mark `doc_id` relevant to `query_id`."""
        return self.dataset.qrels.get(query_id, {}).get(doc_id, 0) > 0


def scifact_first_stage(num_queries: int = 2, num_docs: int = 300) -> FirstStage:
    """Open (and, the first time, build) the cached hybrid index of a SciFact subset."""
    dataset = load_beir(data_dir() / "beir" / "scifact")
    queries = dict(list(dataset.eval_queries().items())[:num_queries])
    keep = {doc_id for qid in queries for doc_id in dataset.qrels[qid]}
    for doc_id in dataset.corpus:
        if len(keep) >= num_docs:
            break
        keep.add(doc_id)
    documents = [doc for doc in dataset.documents() if doc["id"] in keep]
    retriever = HybridRetriever(
        path=cache_dir("stores", f"cookbook-scifact-{num_queries}q-{num_docs}d"), show_progress=False
    )
    if retriever.count() != len(documents):
        logger.info("indexing %d SciFact documents (once; the index is cached)", len(documents))
        retriever.index(documents)
    return FirstStage(retriever=retriever, dataset=dataset, queries=queries)
