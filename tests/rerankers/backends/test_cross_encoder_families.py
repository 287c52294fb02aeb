"""Cross-encoder architectures beyond BERT: XLM-RoBERTa (bge-reranker-v2-m3), DeBERTa-v2/v3
(mxbai-rerank v1), ModernBERT (gte-reranker-modernbert) and ELECTRA, on torch and ONNX Runtime.

No weights of these families can be downloaded here, so each is a tiny random model built from a
config of its architecture, with a tokenizer that carries the family's pair layout
(`<s> q </s></s> d </s>` for XLM-R; `[CLS] q [SEP] d [SEP]` with token types for DeBERTa; no token
types for ModernBERT; the BERT WordPiece tokenizer of the shared MiniLM for ELECTRA). The weights
are drawn wide (initializer_range 0.3), so the scores of different pairs differ by far more than
the 1e-4 tolerance: a wrong token, a lost special token or padding that leaks into the result
would show. The reference is sentence-transformers' `CrossEncoder` on the same folder.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FAMILIES = ("xlm-roberta", "deberta-v2", "modernbert", "electra")
FUSED = {"xlm-roberta": True, "electra": True, "deberta-v2": False, "modernbert": False}

PAIRS = [
    ("what is the capital of france", "Paris is the capital and largest city of France."),
    ("what is the capital of france", "Bananas are yellow fruit that grow in tropical climates."),
    ("do statins lower ldl cholesterol", "Statin therapy reduced LDL cholesterol by 40% in the trial."),
    # longer than max_length (128): only the document is cut, as sentence-transformers does
    ("vitamin d and bone density", "Vitamin D supplementation improved bone mineral density in adults. " * 30),
    ("a b", ""),
]
MIXED = [
    "Short.",
    "Mitochondria produce most of the chemical energy needed to power the cell's reactions.",
    "Insulin resistance precedes type 2 diabetes. " * 6,
    "BRCA1 mutations raise the lifetime risk of breast cancer.",
    "The committee reviewed the quarterly budget and approved spending on road repairs. " * 3,
    "T cells",
    "Randomized trials show aspirin lowers the risk of a second heart attack in older adults.",
    "Gut microbiota composition differs between lean and obese twins. " * 2,
]


def _corpus_texts(scifact_dir, n=300):
    texts = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) >= n:
                break
    return texts


def _unigram(texts, specials, unk):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=800, special_tokens=specials, unk_token=unk))
    return tok


def _byte_bpe(texts, specials):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=800, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def build_family(family: str, folder, texts, bert_folder) -> None:
    """Save a tiny random sequence-classification model of `family` with its tokenizer to `folder`."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1,
        initializer_range=0.3,
    )
    if family == "xlm-roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = transformers.XLMRobertaTokenizerFast(
            tokenizer_object=_unigram(texts, specials, "<unk>"), bos_token="<s>", eos_token="</s>", sep_token="</s>",
            cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        )
        # RoBERTa position ids start after padding_idx: 130 positions hold 128 tokens
        config = transformers.XLMRobertaConfig(
            vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2,
            max_position_embeddings=130, **common,
        )
    elif family == "deberta-v2":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        tok = transformers.DebertaV2TokenizerFast(
            tokenizer_object=_unigram(texts, specials, "[UNK]"), bos_token="[CLS]", eos_token="[SEP]",
            sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]",
        )
        # DeBERTa-v3's shape: relative attention with log buckets, no absolute positions, no token types
        config = transformers.DebertaV2Config(
            vocab_size=len(tok), pad_token_id=tok.pad_token_id, relative_attention=True, position_buckets=32,
            max_relative_positions=-1, pos_att_type=["p2c", "c2p"], position_biased_input=False,
            type_vocab_size=0, max_position_embeddings=128, norm_rel_ebd="layer_norm", share_att_key=True, **common,
        )
    elif family == "modernbert":
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_object=_byte_bpe(texts, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]),
            cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
            model_input_names=["input_ids", "attention_mask"],
        )
        # local (sliding-window) attention of 16 tokens in every other layer, rotary positions
        config = transformers.ModernBertConfig(
            vocab_size=len(tok), pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
            global_attn_every_n_layers=2, local_attention=16, max_position_embeddings=128, **common,
        )
    elif family == "electra":
        tok = transformers.AutoTokenizer.from_pretrained(str(bert_folder))
        config = transformers.ElectraConfig(
            vocab_size=tok.vocab_size, embedding_size=16, max_position_embeddings=128, **common
        )
    else:
        raise ValueError(family)
    tok.model_max_length = 128
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def family_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path_factory.mktemp("rankbridge-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def families(tmp_path_factory, scifact_dir, model_dir):
    texts = _corpus_texts(scifact_dir)
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in FAMILIES:
        build_family(family, root / family, texts, model_dir / "minilm-l6-ce-weak")
        out[family] = root / family
    return out


@pytest.fixture(scope="module")
def st_reference(families):
    """sentence-transformers' raw logits (identity activation) for PAIRS, per family."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    out = {}
    for family, folder in families.items():
        model = st.CrossEncoder(str(folder), device="cpu")
        out[family] = np.asarray(model.predict(PAIRS, activation_fn=torch.nn.Identity(), show_progress_bar=False))
    return out


def _ours(reranker, pairs):
    results = reranker.rank_many([q for q, _ in pairs], [[d] for _, d in pairs])
    return np.array([r[0].score for r in results])


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_sentence_transformers(family, runtime, families, st_reference, family_cache):
    from rankbridge.rerankers import load_reranker

    reranker = load_reranker({"backend": "cross-encoder", "model": str(families[family]), "runtime": runtime})
    reference = st_reference[family]
    # the tiny random models must tell these pairs apart, or parity would prove nothing
    assert np.ptp(reference) > 0.05, f"{family}: reference scores too close to each other: {reference}"
    np.testing.assert_allclose(_ours(reranker, PAIRS), reference, atol=1e-4, rtol=0)
    if runtime == "onnx":
        name = reranker._forward.onnx_path.name
        assert name == ("model-opt.onnx" if FUSED[family] else "model.onnx"), name


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
@pytest.mark.parametrize("family", FAMILIES)
def test_score_alone_equals_score_in_a_mixed_batch(family, runtime, families, family_cache):
    """Padding never leaks: each candidate scored alone equals its score among 8 of mixed lengths."""
    from rankbridge.rerankers import load_reranker

    reranker = load_reranker(
        {"backend": "cross-encoder", "model": str(families[family]), "runtime": runtime, "batch_size": 8}
    )
    query = "which cells produce energy"
    together = reranker.rank(query, MIXED)
    together_scores = np.array([r.score for r in sorted(together, key=lambda r: r.index)])
    alone = np.array([reranker.rank(query, [doc])[0].score for doc in MIXED])
    np.testing.assert_allclose(together_scores, alone, atol=1e-4, rtol=0)
    assert np.ptp(alone) > 1e-3


@pytest.mark.parametrize("family", ["deberta-v2", "modernbert"])
def test_unfusable_architecture_falls_back_once_with_a_log_line(family, families, tmp_path, monkeypatch, caplog):
    from rankbridge.rerankers import load_reranker
    from rankbridge.rerankers.runtime import onnx as onnx_runtime

    monkeypatch.setenv("RANKBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(onnx_runtime, "_fallback_logged", set())
    spec = {"backend": "cross-encoder", "model": str(families[family]), "runtime": "onnx"}
    with caplog.at_level(logging.INFO, logger="rankbridge.rerankers.runtime.onnx"):
        first = load_reranker(spec)
        load_reranker(spec)
    lines = [r.getMessage() for r in caplog.records if "no transformer fusions" in r.getMessage()]
    assert len(lines) == 1 and repr(family) in lines[0]
    assert (first._forward.onnx_path.parent / "model-opt.unsupported").is_file()


def test_fused_graph_has_fused_attention(families, family_cache):
    onnx = pytest.importorskip("onnx")
    from rankbridge.rerankers.runtime.onnx import export_onnx

    for family in ("xlm-roberta", "electra"):
        graph = onnx.load(str(export_onnx(families[family])))
        ops = {node.op_type for node in graph.graph.node}
        assert "Attention" in ops or "MultiHeadAttention" in ops, (family, sorted(ops))
