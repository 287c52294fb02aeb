"""Cross-encoder fine-tuning on mined pairs with sentence-transformers' `CrossEncoderTrainer`:
easy (random) negatives first, hard ones after, one checkpointed trainer run per phase, optionally
evaluated on a validation split (best checkpoint kept, early stopping)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rankbridge.rerankers.core.errors import ConfigError, require

logger = logging.getLogger(__name__)

RECORD_NAME = "rankbridge_training.json"
LOSSES = ("bce", "listwise")
CHECKPOINT_CHOICES = ("best", "last")
_NEGATIVE_COLUMNS = {"hard": ["hard_negatives"], "random": ["random_negatives"], "both": ["random_negatives", "hard_negatives"]}


def to_labeled_pairs(mined, negatives: Literal["hard", "random", "both"] = "hard", seed: int = 0):
    """Flatten mined rows into shuffled (query, passage, label) pairs for binary cross-entropy."""
    datasets = require("datasets", extra="train")
    out: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for row in mined:
        out["query"].append(row["query"])
        out["passage"].append(row["positive"])
        out["label"].append(1.0)
        for column in _NEGATIVE_COLUMNS[negatives]:
            for passage in row[column]:
                out["query"].append(row["query"])
                out["passage"].append(passage)
                out["label"].append(0.0)
    return datasets.Dataset.from_dict(out).shuffle(seed=seed)


def to_listwise_groups(mined, negatives: Literal["hard", "random", "both"] = "hard", seed: int = 0):
    """One shuffled row per mined (query, positive): `query`, `positive`, `negative_1`..`negative_n`,
    the input of sentence-transformers' cross-encoder `MultipleNegativesRankingLoss` (a softmax
    over the positive and its negatives: the group loss of "localized contrastive estimation").

    n is the most negatives any row has; a row with fewer repeats its own negatives in order (a
    repeated negative weighs twice, nothing from another query is borrowed); a row with none is
    dropped and counted in the log, never silently.
    """
    datasets = require("datasets", extra="train")
    groups = [
        (row["query"], row["positive"], [p for column in _NEGATIVE_COLUMNS[negatives] for p in row[column]])
        for row in mined
    ]
    kept = [g for g in groups if g[2]]
    if len(kept) < len(groups):
        logger.warning("%d of %d rows have no %s negatives and are left out of the listwise groups",
                       len(groups) - len(kept), len(groups), negatives)
    if not kept:
        raise ConfigError(f"no mined row has {negatives} negatives: listwise training needs at least one per row")
    width = max(len(g[2]) for g in kept)
    padded = sum(1 for g in kept if len(g[2]) < width)
    if padded:
        logger.info("%d of %d rows have fewer than %d %s negatives and repeat their own", padded, len(kept), width, negatives)
    out: dict[str, list[Any]] = {"query": [g[0] for g in kept], "positive": [g[1] for g in kept]}
    for i in range(width):
        out[f"negative_{i + 1}"] = [g[2][i % len(g[2])] for g in kept]
    return datasets.Dataset.from_dict(out).shuffle(seed=seed)


@dataclass
class TrainingConfig:
    """How `train_cross_encoder` trains.

    `base_model` is what is loaded (a path, a $RANKBRIDGE_MODEL_DIR name or a hub id);
    `base_model_name` is how the trained folder records it (default: `base_model` itself, or
    only its folder name when it is an absolute path, so no machine's paths are written).
    With a validator, the model is evaluated every `eval_steps` steps (default `save_steps`;
    checkpoints follow the evaluations), the best checkpoint of each phase is kept, and a phase
    stops after `early_stopping_patience` evaluations without improvement (None: no early stop).
    `checkpoint_choice="last"` keeps each phase's final model instead (the validation curve is
    still recorded): the best of a few noisy validations is partly the luckiest one.

    `loss` is "bce" (pointwise binary cross-entropy over `to_labeled_pairs`) or "listwise"
    (sentence-transformers' cross-encoder `MultipleNegativesRankingLoss` over
    `to_listwise_groups`: each positive against its own negatives plus `in_batch_negatives`
    positives or negatives of other rows in the batch; `batch_size` then counts groups).
    """

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
    base_model_name: str | None = None
    eval_steps: int | None = None
    early_stopping_patience: int | None = None
    checkpoint_choice: str = "best"
    loss: str = "bce"
    in_batch_negatives: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def recorded_base_model(self) -> str:
        if self.base_model_name:
            return self.base_model_name
        return Path(self.base_model).name if os.path.isabs(self.base_model) else self.base_model


def train_cross_encoder(
    phases: Sequence[tuple[str, Any] | tuple[str, Any, float]],
    config: TrainingConfig,
    resume: bool = True,
    validator: Any = None,
    record_extra: dict[str, Any] | None = None,
) -> Path:
    """Train a cross-encoder through `phases` in order (e.g. [("random", pairs), ("hard", pairs, 2)]).

    A phase is (name, labelled pairs) or (name, labelled pairs, epochs); names must be unique
    (they name the checkpoint folders). Each phase is a `CrossEncoderTrainer` run with its own
    checkpoints under `<output_dir>/checkpoints/<phase>`; a finished phase is skipped on the next
    call and an interrupted one resumes from its last checkpoint when `resume` is true. The
    final model is saved at `output_dir`, loadable by
    `load_reranker({"backend": "cross-encoder", "model": output_dir})`, with
    `rankbridge_training.json` (settings, per-phase time and validation, `record_extra`; no
    absolute paths) and a model card (`README.md`, see `card.write_model_card`).

    `validator` is a sentence-transformers evaluator (e.g. `validation.reranking_validator`):
    evaluated every `eval_steps`, the best checkpoint of each phase is the one kept, and
    `early_stopping_patience` stops a phase that no longer improves.

    `bf16` trains under bfloat16 autocast (on a CPU with AVX512-BF16 or AMX, about twice as fast
    as float32); the saved weights stay float32.

    When `head_learning_rate` is set, the classification head and pooler — random when the
    base is a bi-encoder — train at that rate and the encoder body at `learning_rate`.
    """
    torch = require("torch", extra="train")
    st = require("sentence_transformers", extra="train", package="sentence-transformers")
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss

    from rankbridge.integrations.training.card import write_model_card
    from rankbridge.rerankers.core.paths import plain_name, resolve_model
    from rankbridge.rerankers.runtime.devices import resolve_device

    plan = [(p[0], p[1], float(p[2]) if len(p) > 2 else float(config.epochs)) for p in phases]
    names = [name for name, _, _ in plan]
    for name in names:  # each names a folder under <output_dir>/checkpoints: never a path
        plain_name(name, "phase name")
    if not plan or len(set(names)) != len(names):
        raise ConfigError(f"phases need unique names (they name the checkpoint folders), got {names}")
    if any(epochs <= 0 for _, _, epochs in plan):
        raise ConfigError(f"every phase needs epochs > 0, got {[(n, e) for n, _, e in plan]}")
    if config.loss not in LOSSES:
        raise ConfigError(f"loss must be one of {list(LOSSES)}, got {config.loss!r}")
    if config.in_batch_negatives < 0:
        raise ConfigError(f"in_batch_negatives must be >= 0, got {config.in_batch_negatives}")
    wanted = "positive" if config.loss == "listwise" else "label"
    for name, pairs, _ in plan:
        columns = getattr(pairs, "column_names", None)
        if columns is not None and wanted not in columns:
            helper = "to_listwise_groups" if config.loss == "listwise" else "to_labeled_pairs"
            raise ConfigError(f"phase '{name}' has columns {columns}; loss '{config.loss}' takes the rows of {helper}")
    if config.early_stopping_patience is not None and validator is None:
        raise ConfigError("early stopping needs a validation split (a validator)")
    if config.checkpoint_choice not in CHECKPOINT_CHOICES:
        raise ConfigError(f"checkpoint_choice must be one of {list(CHECKPOINT_CHOICES)}, got {config.checkpoint_choice!r}")
    if config.checkpoint_choice == "last" and config.early_stopping_patience is not None:
        raise ConfigError("early stopping keeps the best checkpoint, checkpoint_choice 'last' the final model: choose one")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device, extra="train")
    source = resolve_model(config.base_model)
    for name in names:
        done = out / "checkpoints" / name / "final"
        if (done / "config.json").exists():
            source = str(done)
    model = st.cross_encoder.CrossEncoder(source, num_labels=1, max_length=config.max_length, device=device)

    class GroupLoss(MultipleNegativesRankingLoss):
        """sentence-transformers' loss, where 0 in-batch negatives means none (it cannot sample 0)."""

        def get_in_batch_negatives(self, anchors, candidates):
            return super().get_in_batch_negatives(anchors, candidates) if self.num_negatives else iter(())

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

    steps = config.eval_steps or config.save_steps
    for name, train_pairs, epochs in plan:
        phase_dir = out / "checkpoints" / name
        final = phase_dir / "final"
        if (final / "config.json").exists():
            logger.info("phase '%s' already finished in %s; skipping", name, final)
            continue
        evaluation: dict[str, Any] = {}
        callbacks = []
        if validator is not None:
            evaluation = {
                "eval_strategy": "steps",
                "eval_steps": steps,
                "load_best_model_at_end": config.checkpoint_choice == "best",
                "metric_for_best_model": f"eval_{validator.primary_metric}",
                "greater_is_better": True,
            }
            if config.early_stopping_patience is not None:
                from transformers import EarlyStoppingCallback

                callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
        args = CrossEncoderTrainingArguments(
            output_dir=str(phase_dir),
            num_train_epochs=epochs,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio in transformers v5
            save_strategy="steps",
            save_steps=steps if validator is not None else config.save_steps,
            save_total_limit=2,
            logging_steps=max(1, min(50, config.save_steps)),
            seed=config.seed,
            report_to="none",
            use_cpu=device == "cpu",
            bf16=config.bf16,
            dataloader_drop_last=False,
            disable_tqdm=False,
            **evaluation,
            **config.extra,
        )
        if config.loss == "listwise":
            loss = GroupLoss(model, num_negatives=config.in_batch_negatives)
        else:
            pos_weight = None if config.positive_weight is None else torch.tensor(config.positive_weight)
            loss = BinaryCrossEntropyLoss(model, pos_weight=pos_weight)
        trainer = HeadLRTrainer(
            model=model,
            args=args,
            train_dataset=train_pairs,
            loss=loss,
            evaluator=validator,
            callbacks=callbacks or None,
        )
        checkpoints = sorted(phase_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        resume_from = str(checkpoints[-1]) if (resume and checkpoints) else None
        if resume_from:
            logger.info("phase '%s': resuming from %s", name, resume_from)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        _add_phase_seconds(phase_dir, time.perf_counter() - started)
        state = trainer.state
        best_step = _checkpoint_step(state.best_model_checkpoint)
        summary = {
            "epochs": epochs,
            "pairs": len(train_pairs),
            "steps": int(state.global_step),
            "planned_steps": int(state.max_steps),
            "stopped_early": bool(validator is not None and state.global_step < state.max_steps),
            "best_metric": state.best_metric,
            "best_step": best_step,
            "kept_step": best_step if (config.checkpoint_choice == "best" and best_step is not None) else int(state.global_step),
            "validation": [
                {"step": int(row["step"]), validator.primary_metric: float(row[f"eval_{validator.primary_metric}"])}
                for row in state.log_history
                if validator is not None and f"eval_{validator.primary_metric}" in row
            ],
        }
        (phase_dir / "phase.json").write_text(json.dumps(summary, indent=2))
        model = trainer.model  # the best checkpoint when a validator chose one and checkpoint_choice is "best"
        model.save(str(final))
    model.save(str(out))
    record = training_record(config, names, out)
    record.update(record_extra or {})
    (out / RECORD_NAME).write_text(json.dumps(record, indent=2))
    write_model_card(out, record)
    return out


def training_record(config: TrainingConfig, names: Sequence[str], out: Path) -> dict[str, Any]:
    """What `rankbridge_training.json` holds: the settings (base model by its given name, the
    output folder by its name only), and per phase its time, steps and validation curve."""
    record = asdict(config)
    record.pop("base_model_name")
    record["base_model"] = config.recorded_base_model()
    record["output_dir"] = out.name
    record["phase_seconds"] = {name: _phase_seconds(out / "checkpoints" / name) for name in names}
    record["train_seconds"] = sum(record["phase_seconds"].values())
    record["phases"] = {}
    for name in names:
        path = out / "checkpoints" / name / "phase.json"
        record["phases"][name] = json.loads(path.read_text()) if path.is_file() else {}
    return record


def _checkpoint_step(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return int(Path(path).name.split("-")[-1])
    except ValueError:
        return None


def _phase_seconds(phase_dir: Path) -> float:
    path = phase_dir / "train_seconds.json"
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0


def _add_phase_seconds(phase_dir: Path, seconds: float) -> None:
    """Trainer time of a phase, summed over every run of it that returned (a run killed midway
    leaves no time; the run that resumes it adds its own)."""
    total = _phase_seconds(phase_dir) + seconds
    (phase_dir / "train_seconds.json").write_text(json.dumps({"seconds": total}))


__all__ = [
    "LOSSES",
    "RECORD_NAME",
    "TrainingConfig",
    "to_labeled_pairs",
    "to_listwise_groups",
    "train_cross_encoder",
    "training_record",
]
