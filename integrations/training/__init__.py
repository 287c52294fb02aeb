"""Training a reranker: hard-negative mining (`mining`) and cross-encoder fine-tuning (`trainer`)."""

from rankbridge.integrations.training.mining import BM25Corpus, FirstStage, document_text, mine_hard_negatives
from rankbridge.integrations.training.trainer import TrainingConfig, to_labeled_pairs, train_cross_encoder

__all__ = ["BM25Corpus", "FirstStage", "TrainingConfig", "document_text", "mine_hard_negatives", "to_labeled_pairs", "train_cross_encoder"]
