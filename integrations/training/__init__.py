"""Training a reranker: hard-negative mining (`mining`), a validation split (`validation`),
cross-encoder fine-tuning (`trainer`), fusion weights (`fusion`) and the model card (`card`)."""

from rankbridge.integrations.training.mining import (
    BM25Corpus,
    FirstStage,
    document_text,
    mine_hard_negatives,
    split_validation,
)
from rankbridge.integrations.training.trainer import (
    TrainingConfig,
    to_labeled_pairs,
    to_listwise_groups,
    train_cross_encoder,
)

__all__ = [
    "BM25Corpus",
    "FirstStage",
    "TrainingConfig",
    "document_text",
    "mine_hard_negatives",
    "split_validation",
    "to_labeled_pairs",
    "to_listwise_groups",
    "train_cross_encoder",
]
