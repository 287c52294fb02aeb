"""Build a degraded scanned-page evaluation set from BEIR SciFact (test split).

For a seeded sample of test queries, each query's candidate list is its judged abstracts plus
BM25 distractors from the whole corpus (hard negatives, as a first stage would return them).
Every abstract in those lists is typeset onto a page image (A4 at --dpi) and degraded like a
scan: one of several fonts, a slight rotation, blur, sensor noise, uneven paper tone and JPEG
compression. The output is a BEIR-like folder:

    corpus.jsonl      {"_id", "title", "text", "image_path"}  (clean text kept for the text baseline)
    queries.jsonl     {"_id", "text"}
    qrels/test.tsv    query-id, corpus-id, score (SciFact's judgments, unchanged)
    candidates.tsv    query-id, corpus-id, bm25 score (the list a reranker is given)
    images/<id>.jpg   the degraded pages
    manifest.json     the arguments, counts and degradation parameters per page

Run:
    python benchmarks/build_scanned_scifact.py --queries 20 --candidates 5
(default output: $RANKBRIDGE_CACHE_DIR/scifact-scanned-q<queries>-c<candidates>-s<seed>)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import textwrap
from pathlib import Path

import numpy as np

logger = logging.getLogger("build_scanned_scifact")

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = [  # (regular, bold): the DejaVu family ships with Debian's fonts-dejavu-core
    ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("DejaVuSerifCondensed.ttf", "DejaVuSerifCondensed-Bold.ttf"),
    ("DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf"),
]


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def find_fonts(font_dir: Path) -> list[tuple[Path, Path]]:
    found = [(font_dir / r, font_dir / b) for r, b in FONTS if (font_dir / r).is_file() and (font_dir / b).is_file()]
    if not found:
        raise SystemExit(f"no DejaVu fonts found in {font_dir}; install fonts-dejavu-core or pass --font-dir")
    return found


def typeset(title: str, text: str, fonts: tuple[Path, Path], dpi: int, rng: random.Random):
    """Typeset one abstract on a white A4 page; returns (PIL image, parameters)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = int(8.27 * dpi), int(11.69 * dpi)
    point = rng.uniform(10.0, 12.0)
    size = int(round(point / 72 * dpi))
    regular = ImageFont.truetype(str(fonts[0]), size)
    bold = ImageFont.truetype(str(fonts[1]), int(size * 1.25))
    margin = int(0.9 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    y = margin
    for font, body, gap in ((bold, title, 1.35), (regular, text, 1.45)):
        avg = font.getlength("abcdefghijklmnopqrstuvwxyz etaoin ") / 34
        chars = max(20, int((width - 2 * margin) / avg))
        for line in textwrap.wrap(body, chars):
            if y > height - margin:
                break
            draw.text((margin, y), line, fill=rng.randint(0, 40), font=font)
            y += int(font.size * gap)
        y += int(size * 1.2)
    return page, {"font": fonts[0].name, "point": round(point, 2)}


def degrade(page, rng: random.Random, np_rng: np.random.Generator):
    """Scan-like degradation: paper tone, rotation, blur, noise, JPEG. Returns (JPEG bytes, parameters)."""
    from PIL import Image, ImageFilter

    angle = rng.uniform(-1.5, 1.5)
    blur = rng.uniform(0.4, 1.1)
    noise = rng.uniform(6.0, 14.0)
    quality = rng.randint(30, 60)
    paper = rng.randint(225, 245)
    # Paper tone: ink stays dark, white becomes off-white with a soft gradient.
    arr = np.asarray(page, dtype=np.float32) / 255.0
    gradient = np.linspace(0.0, rng.uniform(-12, 12), arr.shape[0], dtype=np.float32)[:, None]
    arr = arr * (paper + gradient)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=paper)
    img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32) + np_rng.normal(0.0, noise, size=img.size[::-1]).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    params = {"angle": round(angle, 3), "blur": round(blur, 3), "noise": round(noise, 2), "jpeg_quality": quality, "paper": paper}
    return buffer.getvalue(), params


def bm25_candidates(corpus: list[dict], queries: list[dict], k: int) -> dict[str, list[tuple[str, float]]]:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{d.get('title', '')} {d['text']}" for d in corpus], stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([q["text"] for q in queries], stopwords="en", show_progress=False)
    docs, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    return {
        q["_id"]: [(corpus[int(i)]["_id"], float(s)) for i, s in zip(docs[row], scores[row])]
        for row, q in enumerate(queries)
    }


def build(args: argparse.Namespace) -> Path:
    from tqdm.auto import tqdm

    source = Path(args.scifact_dir)
    corpus = read_jsonl(source / "corpus.jsonl")
    by_id = {d["_id"]: d for d in corpus}
    all_queries = {q["_id"]: q for q in read_jsonl(source / "queries.jsonl")}
    qrels = read_qrels(source / "qrels" / "test.tsv")
    rng = random.Random(args.seed)
    # Queries whose judged documents all fit in the candidate list.
    eligible = sorted(q for q, rel in qrels.items() if len(rel) < args.candidates and q in all_queries)
    chosen = sorted(rng.sample(eligible, min(args.queries, len(eligible))), key=int)
    queries = [all_queries[q] for q in chosen]
    first_stage = bm25_candidates(corpus, queries, k=args.candidates + 10)

    candidates: dict[str, list[tuple[str, float]]] = {}
    for q in queries:
        judged = list(qrels[q["_id"]])
        bm25 = dict(first_stage[q["_id"]])
        distractors = [d for d, _ in first_stage[q["_id"]] if d not in judged][: args.candidates - len(judged)]
        # A judged abstract BM25 missed gets the lowest first-stage score of the list.
        floor = min(bm25.values()) if bm25 else 0.0
        listed = [(d, bm25.get(d, floor)) for d in judged + distractors]
        candidates[q["_id"]] = sorted(listed, key=lambda item: -item[1])

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    fonts = find_fonts(Path(args.font_dir))
    doc_ids = sorted({d for listed in candidates.values() for d, _ in listed})
    pages = {}
    for doc_id in tqdm(doc_ids, desc="typesetting pages", unit="page"):
        doc = by_id[doc_id]
        doc_rng = random.Random(f"{args.seed}:{doc_id}")
        np_rng = np.random.default_rng(int(hashlib.sha256(f"{args.seed}:{doc_id}".encode()).hexdigest()[:8], 16))
        page, typeset_params = typeset(doc.get("title", ""), doc["text"], doc_rng.choice(fonts), args.dpi, doc_rng)
        data, degrade_params = degrade(page, doc_rng, np_rng)
        (out / "images" / f"{doc_id}.jpg").write_bytes(data)
        pages[doc_id] = {**typeset_params, **degrade_params}

    with open(out / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc_id in doc_ids:
            doc = by_id[doc_id]
            row = {"_id": doc_id, "title": doc.get("title", ""), "text": doc["text"], "image_path": f"images/{doc_id}.jpg"}
            handle.write(json.dumps(row) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as handle:
        for q in queries:
            handle.write(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n")
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            for doc_id, score in qrels[q["_id"]].items():
                handle.write(f"{q['_id']}\t{doc_id}\t{score}\n")
    with open(out / "candidates.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            for doc_id, score in candidates[q["_id"]]:
                handle.write(f"{q['_id']}\t{doc_id}\t{score:.6f}\n")
    manifest = {
        "source": str(source),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "queries": len(queries),
        "pages": len(doc_ids),
        "judgments": sum(len(qrels[q["_id"]]) for q in queries),
        "page_params": pages,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    logger.info("wrote %d pages for %d queries to %s", len(doc_ids), len(queries), out)
    return out


def default_out(queries: int, candidates: int, seed: int) -> Path:
    from rankbridge.rerankers.core.paths import cache_dir

    return cache_dir(f"scifact-scanned-q{queries}-c{candidates}-s{seed}")


def main(argv: list[str] | None = None) -> Path:
    from rankbridge.rerankers.core.paths import data_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact-dir", default=str(data_dir() / "beir" / "scifact"))
    parser.add_argument("--queries", type=int, default=20, help="test queries to sample")
    parser.add_argument("--candidates", type=int, default=5, help="pages per query: judged abstracts + BM25 distractors")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--font-dir", default=str(FONT_DIR))
    parser.add_argument("--out", default=None, help="output folder (default under $RANKBRIDGE_CACHE_DIR)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(default_out(args.queries, args.candidates, args.seed))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = build(args)
    print(out)
    return out


if __name__ == "__main__":
    main()
