"""Text rows for the multi-label, regression and token-classification tests: tags are the tag words a text contains,
the score counts them, and `ner` tags each word (`word_tags`). A frozen encoder sees the words, so every task is
learnable at the tiny size. `tagged_images`: the image twin for multi-label and regression."""

from __future__ import annotations

import json
import random
from pathlib import Path

TAGS = ("river", "engine", "garden")
FILLER = ("the", "a", "house", "blue", "walks", "quiet", "paper", "light", "stone", "green", "slow", "wide")


def task_rows(n: int, seed: int) -> list[dict]:
    """Texts with `tags` (the tag words they contain) and `score` (10 + 3 per tag word, plus a little noise)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tags = [t for t in TAGS if rng.random() < 0.4]
        words = [rng.choice(FILLER) for _ in range(6)] + tags * 2
        rng.shuffle(words)
        rows.append(
            {
                "text": " ".join(words),
                "tags": tags,
                "score": 10.0 + 3 * len(tags) + rng.gauss(0, 0.25),
                "words": words,
                "ner": word_tags(words),
            }
        )
    return rows


def word_tags(words: list[str]) -> list[str]:
    """IOB2 tags of a row's words: a tag word is an entity of its own type (B-RIVER), and a "stone" right after it
    continues that entity (I-RIVER); every other word is O. Read from the words alone, so a frozen encoder's
    per-token features can learn it."""
    tags, open_type = [], None
    for word in words:
        if word in TAGS:
            open_type = word.upper()
            tags.append(f"B-{open_type}")
        elif word == "stone" and open_type:
            tags.append(f"I-{open_type}")
        else:
            open_type = None
            tags.append("O")
        if tags[-1].startswith("I-"):
            open_type = None
    return tags


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_splits(root: Path, sizes: dict[str, int]) -> dict[str, str]:
    """One JSON-lines file per split, each with its own seed."""
    root.mkdir(parents=True, exist_ok=True)
    return {split: write_rows(root / f"{split}.jsonl", task_rows(n, i)) for i, (split, n) in enumerate(sizes.items())}


def tagged_images(root: Path, n: int = 32, size: int = 16, split: str = "train") -> Path:
    """An image folder whose `metadata.jsonl` gives each image its strong colour channels as tags, and their count
    as a score: both learnable from the pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / split
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        strong = [c for c in range(3) if rng.random() < 0.5]
        pixels = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        pixels[..., strong] += 150
        Image.fromarray(pixels).save(folder / f"{i}.png")
        names = [("red", "green", "blue")[c] for c in strong]
        rows.append({"file_name": f"{i}.png", "tags": names, "score": float(len(strong)) + 0.5})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
