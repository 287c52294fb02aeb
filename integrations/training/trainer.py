"""Cross-encoder fine-tuning on mined pairs with sentence-transformers' `CrossEncoderTrainer`:
easy (random) negatives first, hard ones after, one checkpointed trainer run per phase."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm.auto import tqdm

from rankbridge.rerankers.core.errors import ConfigError, require
from rankbridge.rerankers.core.types import Candidate

logger = logging.getLogger(__name__)

Document = Mapping[str, str] | str

def to_labeled_pairs(mined, negatives: Literal["hard", "random", "both"] = "hard", seed: int = 0):
    """Flatten mined rows into shuffled (query, passage, label) pairs for binary cross-entropy."""
    datasets = require("datasets", extra="train")
    out: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    columns = {"hard": ["hard_negatives"], "random": ["random_negatives"], "both": ["random_negatives", "hard_negatives"]}
    for row in mined:
        out["query"].append(row["query"])
        out["passage"].append(row["positive"])
        out["label"].append(1.0)
        for column in columns[negatives]:
            for passage in row[column]:
                out["query"].append(row["query"])
                out["passage"].append(passage)
                out["label"].append(0.0)
    return datasets.Dataset.from_dict(out).shuffle(seed=seed)


@dataclass
class TrainingConfig:
    base_model: str
    output_dir: str
    epochs: float = 1.0
    batch_size: int = 16
    max_length: int = 256
    learning_rate: float = 3e-5
    head_learning_rate: float | None = 1e-3
    warmup_ratio: float = 0.1
    save_steps: int = 200
    seed: int = 0
    device: str = "auto"
    max_steps: int = -1
    bf16: bool = False
    positive_weight: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def train_cross_encoder(phases: Sequence[tuple[str, Any]], config: TrainingConfig, resume: bool = True) -> Path:
    """Train a cross-encoder through `phases` in order (e.g. [("random", pairs), ("hard", pairs)]).

    Each phase is a `CrossEncoderTrainer` run with its own checkpoints under
    `<output_dir>/checkpoints/<phase>`; a finished phase is skipped on the next call and an
    interrupted one resumes from its last checkpoint when `resume` is true. The final model is
    saved at `output_dir`, loadable by `load_reranker({"backend": "cross-encoder", "model": output_dir})`.

    `bf16` trains under bfloat16 autocast (on a CPU with AVX512-BF16 or AMX, about twice as fast
    as float32); the saved weights stay float32.

    When `head_learning_rate` is set, the classification head and pooler — random when the
    base is a bi-encoder — train at that rate and the encoder body at `learning_rate`.
    """
    torch = require("torch", extra="train")
    st = require("sentence_transformers", extra="train", package="sentence-transformers")
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from rankbridge.rerankers.core.paths import resolve_model

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    source = resolve_model(config.base_model)
    for name, _ in phases:
        done = out / "checkpoints" / name / "final"
        if (done / "config.json").exists():
            source = str(done)
    model = st.cross_encoder.CrossEncoder(source, num_labels=1, max_length=config.max_length, device=device)

    class HeadLRTrainer(CrossEncoderTrainer):
        def create_optimizer(self, *args, **kwargs):
            if self.optimizer is None and config.head_learning_rate:
                head, body = [], []
                for pname, param in self.model.named_parameters():
                    if param.requires_grad:
                        (head if ("classifier" in pname or "pooler" in pname) else body).append(param)
                self.optimizer = torch.optim.AdamW(
                    [
                        {"params": body, "lr": config.learning_rate},
                        {"params": head, "lr": config.head_learning_rate},
                    ],
                    weight_decay=0.01,
                )
                return self.optimizer
            return super().create_optimizer(*args, **kwargs)

    for name, train_pairs in phases:
        phase_dir = out / "checkpoints" / name
        final = phase_dir / "final"
        if (final / "config.json").exists():
            logger.info("phase '%s' already finished in %s; skipping", name, final)
            continue
        args = CrossEncoderTrainingArguments(
            output_dir=str(phase_dir),
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio in transformers v5
            save_strategy="steps",
            save_steps=config.save_steps,
            save_total_limit=2,
            logging_steps=max(1, min(50, config.save_steps)),
            seed=config.seed,
            report_to="none",
            use_cpu=device == "cpu",
            bf16=config.bf16,
            dataloader_drop_last=False,
            disable_tqdm=False,
            **config.extra,
        )
        pos_weight = None if config.positive_weight is None else torch.tensor(config.positive_weight)
        trainer = HeadLRTrainer(
            model=model,
            args=args,
            train_dataset=train_pairs,
            loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight),
        )
        checkpoints = sorted(phase_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        resume_from = str(checkpoints[-1]) if (resume and checkpoints) else None
        if resume_from:
            logger.info("phase '%s': resuming from %s", name, resume_from)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        _add_phase_seconds(phase_dir, time.perf_counter() - started)
        model.save(str(final))
    model.save(str(out))
    record = asdict(config)
    record["phase_seconds"] = {name: _phase_seconds(out / "checkpoints" / name) for name, _ in phases}
    record["train_seconds"] = sum(record["phase_seconds"].values())
    (out / "rankbridge_training.json").write_text(json.dumps(record, indent=2))
    return out


def _phase_seconds(phase_dir: Path) -> float:
    path = phase_dir / "train_seconds.json"
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0


def _add_phase_seconds(phase_dir: Path, seconds: float) -> None:
    """Trainer time of a phase, summed over every run of it that returned (a run killed midway
    leaves no time; the run that resumes it adds its own)."""
    total = _phase_seconds(phase_dir) + seconds
    (phase_dir / "train_seconds.json").write_text(json.dumps({"seconds": total}))


__all__ = [
    "BM25Corpus",
    "FirstStage",
    "TrainingConfig",
    "document_text",
    "mine_hard_negatives",
    "to_labeled_pairs",
    "train_cross_encoder",
]
