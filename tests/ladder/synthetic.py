"""Tiny, fast, deterministic text-classification scenarios with known answers, for testing the ladder.

Everything lives in a 64-token world: `[PAD] [UNK] [CLS] [SEP] [MASK]` and the words `w0 .. w58`.
A row is `length` filler words with 2 keywords of its class dropped in at random positions; which
words are keywords and which are filler decides how hard a task is and how much a backbone pretrained
on another task already knows about it.

Backbones are a 2-layer, 32-wide BERT saved like a checkpoint (base model + tokenizer, safetensors):
loading one as a sequence classifier gives a fresh classifier head on top of it.

No test functions here: the scenario builders (`scenario_close`, `scenario_no_signal`,
`scenario_deeper_helps`) write csvs and backbone folders into a given directory and document the
answer each rung of the ladder should give.
"""

from __future__ import annotations

import csv
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
N_WORDS = 59
VOCAB_SIZE = len(SPECIALS) + N_WORDS  # 64
MAX_POSITIONS = 32


def words(start: int, stop: int) -> list[int]:
    """Word ids `start .. stop-1` (word i is written `w{i}`)."""
    return list(range(start, stop))


def groups(start: int, n_classes: int, per_class: int) -> list[list[int]]:
    """`n_classes` consecutive, disjoint keyword sets of `per_class` words each, from word `start` on."""
    return [words(start + c * per_class, start + (c + 1) * per_class) for c in range(n_classes)]


# The word layout every scenario shares: two disjoint keyword blocks and a filler block.
SOURCE_KEYWORDS = groups(0, 4, 5)  # set A: w0..w19, 4 classes x 5 words
TARGET_KEYWORDS = groups(20, 4, 5)  # set B: w20..w39, disjoint from A
FILLER = words(40, N_WORDS)  # w40..w58, never a keyword
# The source task's filler also holds every B word: pretraining teaches the backbone to ignore them.
SOURCE_FILLER = [w for ws in TARGET_KEYWORDS for w in ws] + FILLER


def class_names(n: int, prefix: str = "c") -> list[str]:
    """`c0, c1, ...`: strings that sort in class order (the loader sorts label strings) and that
    csv readers keep as strings."""
    if n > 10:
        raise ValueError("at most 10 classes keep the names sorting in class order")
    return [f"{prefix}{i}" for i in range(n)]


# --------------------------------------------------------------------------------------------- text


def make_tokenizer(folder: Path) -> None:
    """Write the 64-token `vocab.txt` and a saved `BertTokenizerFast` into `folder` (offline-loadable
    with `AutoTokenizer.from_pretrained(str(folder))`)."""
    from transformers import BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + [f"w{i}" for i in range(N_WORDS)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # from_pretrained on the folder works on transformers 4.x (vocab_file) and 5.x (vocab=) alike.
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True, model_max_length=MAX_POSITIONS)
    if len(tokenizer) != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    tokenizer.save_pretrained(str(folder))


def keyword_rows(
    n: int,
    keywords_by_class: Sequence[Sequence[int]],
    seed: int,
    length: int = 10,
    filler: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    keywords_per_row: int = 2,
) -> list[dict[str, str]]:
    """`n` rows `{"text": "w.. w..", "label": name}`, classes balanced (n // k each, the rest to the
    first classes), in a seeded random order.

    Each text is `length` filler words drawn with replacement from `filler` (default: every word in no
    keyword set), with `keywords_per_row` keywords of the row's class (drawn with replacement) inserted
    at random positions, so it has `length + keywords_per_row` words.
    """
    rng = random.Random(seed)
    k = len(keywords_by_class)
    names = list(names) if names is not None else class_names(k)
    if len(names) != k:
        raise ValueError(f"{k} keyword sets but {len(names)} class names")
    all_keywords = {w for ws in keywords_by_class for w in ws}
    filler = list(filler) if filler is not None else [w for w in range(N_WORDS) if w not in all_keywords]
    if all_keywords & set(filler):
        raise ValueError(f"filler words {sorted(all_keywords & set(filler))} are also keywords")
    if not filler or any(not ws for ws in keywords_by_class):
        raise ValueError("every class needs keywords and the filler can not be empty")
    labels = [c for c in range(k) for _ in range(n // k)] + list(range(n % k))
    rng.shuffle(labels)
    rows = []
    for c in labels:
        text = [rng.choice(filler) for _ in range(length)]
        for _ in range(keywords_per_row):
            text.insert(rng.randint(0, len(text)), rng.choice(keywords_by_class[c]))
        rows.append({"text": " ".join(f"w{w}" for w in text), "label": names[c]})
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write rows as a csv with columns `text,label`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


# ---------------------------------------------------------------------------------------- backbones


def tiny_config(num_labels: int = 2):
    """The tiny BERT every backbone here uses.

    Dropout is off: in a 32-wide model it mostly adds noise and makes the long loss plateaus these
    keyword tasks have (accuracy stuck at 1/2 or 3/4 with classes merged in pairs) longer and less
    predictable. The saved config carries it, so every run on these backbones (scratch included)
    trains without dropout.
    """
    from transformers import BertConfig

    return BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )


def encode(folder: Path, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tokenize `texts` with the tokenizer saved in `folder`, padded to one tensor batch."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_POSITIONS, return_tensors="pt"))


def pretrain_backbone(
    folder: Path,
    rows: Sequence[dict[str, str]],
    *,
    seed: int = 0,
    steps: int = 600,
    lr: float = 1e-3,
    batch_size: int = 32,
    target_accuracy: float = 0.98,
    check_every: int = 25,
) -> float:
    """Train a tiny BERT classifier on `rows` (all parameters, AdamW) until train accuracy reaches
    `target_accuracy` or `steps` steps ran; save only its base model (safetensors) + the tokenizer in
    `folder`, so that loading the folder as a sequence classifier gets a fresh head.

    Returns the final train accuracy (eval mode, all rows). Deterministic under `seed`.
    Runs on one intra-op thread (restored afterwards): for a model this small a second thread buys
    nothing, and when another process holds a core it makes steps up to ~6x slower.
    """
    from transformers import BertForSequenceClassification

    folder = Path(folder)
    make_tokenizer(folder)
    names = sorted({r["label"] for r in rows})
    batch = encode(folder, [r["text"] for r in rows])
    labels = torch.tensor([names.index(r["label"]) for r in rows])

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(len(names)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(**batch).logits.argmax(-1)
        model.train()
        return (pred == labels).float().mean().item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        acc, step = 0.0, 0
        while step < steps and acc < target_accuracy:
            for idx in torch.randperm(len(rows), generator=generator).split(batch_size):
                loss = model(**{k: v[idx] for k, v in batch.items()}, labels=labels[idx]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step % check_every == 0 or step >= steps:
                    acc = accuracy()
                    if acc >= target_accuracy or step >= steps:
                        break
        acc = accuracy()
    finally:
        torch.set_num_threads(threads)
    model.bert.save_pretrained(str(folder), safe_serialization=True)
    return acc


def random_backbone(folder: Path, seed: int = 0) -> Path:
    """The tiny BERT with a seeded random init, base model + tokenizer saved like a checkpoint."""
    from transformers import BertModel

    folder = Path(folder)
    make_tokenizer(folder)
    torch.manual_seed(seed)
    BertModel(tiny_config()).save_pretrained(str(folder), safe_serialization=True)
    return folder


def _edit_backbone(src: Path, dst: Path, edit) -> Path:
    """Copy the backbone folder `src` to `dst` and apply `edit(tensors)` to its single safetensors file."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    files = sorted(dst.glob("*.safetensors"))
    if len(files) != 1:
        raise ValueError(f"{src} should hold exactly one safetensors file, found {[f.name for f in files]}")
    tensors = load_file(str(files[0]))
    edit(tensors)
    save_file(tensors, str(files[0]), metadata={"format": "pt"})
    return dst


def _last_output_norm(tensors: dict[str, torch.Tensor]) -> tuple[str, str]:
    last = max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    prefix = f"encoder.layer.{last}.output.LayerNorm"
    if f"{prefix}.weight" not in tensors:
        raise ValueError(f"no {prefix}.weight among {sorted(tensors)[:8]}...")
    return f"{prefix}.weight", f"{prefix}.bias"


def no_signal_backbone(src: Path, dst: Path) -> Path:
    """Copy the backbone folder `src` to `dst` with the last layer's output LayerNorm weight set to zeros.

    Every token's final state is then that LayerNorm's bias, the same vector for every input: whatever the
    pooling (first token, mean, max, the pooler on top), the frozen features carry no signal. LoRA on the
    attention and BitFit cannot get past the zero weight either; training the last block (partial
    unfreeze), everything (full) or a random initialisation (scratch) can.
    """

    def edit(tensors: dict[str, torch.Tensor]) -> None:
        weight, _ = _last_output_norm(tensors)
        tensors[weight] = torch.zeros_like(tensors[weight])

    return _edit_backbone(src, dst, edit)


def tiny_feature_backbone(src: Path, dst: Path, scale: float = 1e-3) -> Path:
    """Copy the backbone folder `src` to `dst` with the last layer's output LayerNorm scaled by `scale`.

    The frozen features keep their geometry, so a probe that is solved (scale-free) separates the classes
    exactly as before; but a head trained by a few epochs of AdamW needs weights 1/scale larger to turn the
    tiny features into confident logits, and is still near chance when an epoch budget ends.
    """

    def edit(tensors: dict[str, torch.Tensor]) -> None:
        for key in _last_output_norm(tensors):
            tensors[key] = tensors[key] * scale

    return _edit_backbone(src, dst, edit)


# ---------------------------------------------------------------------------------------- scenarios
#
# How the answers below were measured (/tmp scratch script, not part of the repo): every folder
# loaded with `peft_ladder.load_backbone(str(folder), label_names=...)`, 1 or 2 torch threads (same
# accuracies). "probe": sklearn LogisticRegression (default C=1) on the frozen pooled features (the
# classifier's input, eval mode). Gradient runs: AdamW, weight decay 0.01, grad-norm clip 1.0,
# EPOCHS epochs, either batch 16 at a constant LR or batch 32 with 6% warmup + cosine:
#   head      classifier only, lr 1e-2, 30 epochs
#   lora      peft LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"],
#             modules_to_save=["classifier"]), lr 2e-3
#   bitfit    every bias + classifier, lr FULL_LR
#   last      bert.encoder.layer.1 + bert.pooler + classifier, lr FULL_LR
#   full      everything, lr FULL_LR
#   scratch   same config, random init (`load_backbone(..., pretrained=False)`), lr FULL_LR
# `Scenario.info["measured"]` holds the (min, max) validation accuracy per rung over the seeds and
# both batch settings.

SOURCE_ROWS = 400
PRETRAIN_STEPS = 600
VALIDATION_ROWS = 200
FULL_LR = 1e-3
EPOCHS = 10


@dataclass
class Scenario:
    """What a scenario builder wrote.

    Attributes:
        backbone: folder to pass to `load_backbone` (base model + tokenizer, safetensors).
        train_csv, validation_csv: `text,label` csvs.
        label_names: sorted class names (the order the data loader maps labels in; pass them as
            `load_backbone(label_names=...)`).
        chance: accuracy of a constant prediction on the (balanced) validation split.
        info: `pretrain_accuracy` (None when a `source` folder was passed in) and `measured`, the
            validation accuracy range per rung found for this scenario (see the notes above).
    """

    backbone: Path
    train_csv: Path
    validation_csv: Path
    label_names: list[str]
    chance: float
    info: dict = field(default_factory=dict)


def source_rows(seed: int = 0) -> list[dict[str, str]]:
    """The source task: 400 rows, 4 classes, keyword set A, filler = every B word + w40..w58."""
    return keyword_rows(SOURCE_ROWS, SOURCE_KEYWORDS, seed=1000 + seed, filler=SOURCE_FILLER)


def pretrained_source_backbone(folder: Path, seed: int = 0) -> tuple[Path, float]:
    """The tiny BERT pretrained on `source_rows(seed)`, saved in `folder`; returns (folder, train accuracy).

    It separates the 4 A classes (train accuracy 0.995-1.0 for seeds 0-7, after 50-375 steps, 1-6 s
    on one thread) and has learnt to treat the B words as filler. Build it once and pass it as
    `source=` to the scenario builders to share it.
    """
    acc = pretrain_backbone(folder, source_rows(seed), seed=seed, steps=PRETRAIN_STEPS)
    return Path(folder), acc


def _source(root: Path, seed: int, source: Path | None) -> tuple[Path, float | None]:
    if source is not None:
        return Path(source), None
    return pretrained_source_backbone(Path(root) / f"source_backbone_{seed}", seed)


def _write_task(folder: Path, keywords: list[list[int]], n_train: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Train (seed 2000 + seed) and validation (seed 3000 + seed) csvs of a keyword task in `folder`."""
    names = class_names(len(keywords))
    train = keyword_rows(n_train, keywords, seed=2000 + seed, filler=FILLER, names=names)
    validation = keyword_rows(VALIDATION_ROWS, keywords, seed=3000 + seed, filler=FILLER, names=names)
    return write_csv(Path(folder) / "train.csv", train), write_csv(Path(folder) / "validation.csv", validation), names


# The close target relabels the source classes: target class i is source class CLOSE_ORDER[i].
CLOSE_ORDER = (2, 0, 3, 1)
CLOSE_KEYWORDS = [SOURCE_KEYWORDS[i] for i in CLOSE_ORDER]
CLOSE_TRAIN_ROWS = 64


def scenario_close(root: Path, seed: int = 0, source: Path | None = None) -> Scenario:
    """Close target, few labels: the frozen probe already solves it.

    Backbone: pretrained on the source task (or `source`, a folder from `pretrained_source_backbone`).
    Target: the 4 source keyword sets A under permuted class names, 64 train rows (16 per class),
    200 validation rows, chance 0.25.

    Known answer (seeds 0-2): probe 1.00 on every seed. Deeper rungs add nothing (LoRA, BitFit, last
    layer, full: 0.98-1.00 at batch 16, but as low as 0.62-0.75 at batch 32 where 64 rows give only
    20 steps); scratch under the old epoch budget was far below (0.25-0.78), but trained as the ladder now
    trains it (its own LR grid, 3x the steps) it reaches 1.00 on seeds 1-2, and so does the TF-IDF baseline:
    the keywords are easy, so this scenario says nothing about scratch's gap. The ladder should stop at the probe.
    """
    backbone, pre = _source(root, seed, source)
    train, validation, names = _write_task(Path(root) / f"close_{seed}", CLOSE_KEYWORDS, CLOSE_TRAIN_ROWS, seed)
    measured = dict(
        probe=(1.0, 1.0), head=(0.995, 1.0), lora=(0.625, 1.0), bitfit=(0.75, 1.0), last=(0.75, 1.0),
        full=(0.75, 1.0), scratch=(0.25, 0.78),
    )  # fmt: skip
    return Scenario(
        backbone, train, validation, names, 1 / len(names), info=dict(pretrain_accuracy=pre, measured=measured)
    )


NO_SIGNAL_TRAIN_ROWS = 240


def scenario_no_signal(root: Path, seed: int = 0, source: Path | None = None) -> Scenario:
    """A backbone whose frozen features carry no signal: only rungs that train the last block recover.

    Backbone: `no_signal_backbone` of the pretrained source backbone (the last layer's output LayerNorm
    weight is zero, so every final token state is the same vector for every input). Target: the close
    task (4 classes, A keywords under permuted names) with 240 train rows, 200 validation rows, chance 0.25.

    Known answer (the ladder tests, seeds 0-2): the probe (any pooling), LoRA on query/value and BitFit
    sit at chance (the features they see are constant); partial unfreeze of the last block, full
    fine-tuning and scratch are clearly above chance (scratch can sit on a plateau at 0.5 or 0.75 with
    classes merged in pairs).
    """
    src, pre = _source(root, seed, source)
    backbone = no_signal_backbone(src, Path(root) / f"no_signal_backbone_{seed}")
    train, validation, names = _write_task(Path(root) / f"no_signal_{seed}", CLOSE_KEYWORDS, NO_SIGNAL_TRAIN_ROWS, seed)
    measured = dict(
        probe=(0.25, 0.25), head=(0.25, 0.25), lora=(0.25, 0.25), bitfit=(0.25, 0.25), last=(0.755, 1.0),
        full=(1.0, 1.0), scratch=(0.685, 1.0),
    )  # fmt: skip
    return Scenario(
        backbone, train, validation, names, 1 / len(names), info=dict(pretrain_accuracy=pre, measured=measured)
    )


def scenario_separable_but_slow(root: Path, seed: int = 0, source: Path | None = None) -> Scenario:
    """Frozen features that separate the classes, at a scale an epoch-budgeted head cannot use.

    Backbone: `tiny_feature_backbone` of the pretrained source backbone (last output LayerNorm x 1e-3).
    Target: the close task, 64 train rows, 200 validation rows, chance 0.25.

    Known answer: the solved probe separates the classes (it standardises its features); an AdamW head at
    the default LR stays near chance after a few epochs, so a ladder whose probe ran to an epoch budget
    would climb to a deeper rung for no reason. The ladder should stop at the probe.
    """
    src, pre = _source(root, seed, source)
    backbone = tiny_feature_backbone(src, Path(root) / f"tiny_feature_backbone_{seed}")
    train, validation, names = _write_task(Path(root) / f"separable_{seed}", CLOSE_KEYWORDS, CLOSE_TRAIN_ROWS, seed)
    return Scenario(backbone, train, validation, names, 1 / len(names), info=dict(pretrain_accuracy=pre))


DEEPER_KEYWORDS = TARGET_KEYWORDS[:2]  # w20..w24 vs w25..w29
DEEPER_TRAIN_ROWS = 300


def scenario_deeper_helps(root: Path, seed: int = 0, source: Path | None = None) -> Scenario:
    """A target only full fine-tuning reliably solves: the backbone learnt to ignore its keywords.

    Backbone: pretrained on the source task, whose filler holds every B word. Target: 2 classes,
    keywords B0 = w20..w24 vs B1 = w25..w29 (filler during pretraining), 300 train rows, 200
    validation rows, chance 0.5.

    Known answer (seeds 0-7): probe 0.455-0.575; full fine-tuning at lr 1e-3 1.00 on every seed at
    batch 16 (190 steps) and 0.895-1.00 at batch 32 + cosine (100 steps). It needs steps and LR:
    batch 16 at lr 3e-4..5e-4 still gives 0.945-1.00, but batch 32 at lr 5e-4 / 3e-4 stalls on seed
    3 (0.685 / 0.58). Scratch 1.00: the pretraining does not help here, depth of adaptation does. In between is seed-dependent: LoRA 0.46-0.755,
    BitFit 0.445-0.60, last layer + pooler 0.48-0.98 (mostly near chance at batch 32, 0.5-0.98 at
    batch 16): assert only that they do not beat full fine-tuning.
    """
    backbone, pre = _source(root, seed, source)
    train, validation, names = _write_task(
        Path(root) / f"deeper_helps_{seed}", DEEPER_KEYWORDS, DEEPER_TRAIN_ROWS, seed
    )
    measured = dict(
        probe=(0.455, 0.575), head=(0.46, 0.61), lora=(0.46, 0.755), bitfit=(0.445, 0.60), last=(0.48, 0.98),
        full=(0.895, 1.0), scratch=(1.0, 1.0),
    )  # fmt: skip
    return Scenario(
        backbone, train, validation, names, 1 / len(names), info=dict(pretrain_accuracy=pre, measured=measured)
    )


# ------------------------------------------------------------------------------------ few labels
#
# Few-label variants for `test_few_labels.py`: 2-6 optimizer steps per epoch, where an epoch-counted budget
# used to end trials inside their warmup.

FEW_TRAIN_ROWS = 64  # 4 steps per epoch at batch 16
TEST_ROWS = 200


@dataclass
class FewLabelScenario(Scenario):
    """A `Scenario` with a held-out test csv (seed 4000 + seed), rows the ladder never chooses on."""

    test_csv: Path | None = None


def scenario_no_signal_few(
    root: Path, seed: int = 0, source: Path | None = None, n_train: int = FEW_TRAIN_ROWS
) -> FewLabelScenario:
    """`scenario_no_signal` with `n_train` training rows (default 64) and a 200-row test csv.

    Same backbone (the last layer's output LayerNorm weight zeroed: constant frozen features) and keywords:
    only rungs that train the last block, and scratch, can recover; with 16 rows per class scratch is the
    noisiest of them (plateaus at 0.5 / 0.75 with classes merged in pairs).
    """
    src, pre = _source(root, seed, source)
    backbone = no_signal_backbone(src, Path(root) / f"no_signal_backbone_{seed}")
    folder = Path(root) / f"no_signal_few_{seed}"
    train, validation, names = _write_task(folder, CLOSE_KEYWORDS, n_train, seed)
    test = keyword_rows(TEST_ROWS, CLOSE_KEYWORDS, seed=4000 + seed, filler=FILLER, names=names)
    return FewLabelScenario(
        backbone,
        train,
        validation,
        names,
        1 / len(names),
        info=dict(pretrain_accuracy=pre),
        test_csv=write_csv(folder / "test.csv", test),
    )


COLORS = ("red", "green", "blue")


def color_image_splits(
    root: Path, per_class: dict[str, int], seed: int = 0, size: int = 16, contrast: int = 20, jitter: int = 60
) -> Path:
    """An image folder `root/<split>/<colour>/<i>.png` per split in `per_class` (split -> images per class).

    Each image is uniform noise in 0..160, plus a random tint (0..`jitter` per channel, per image), plus
    `contrast` on its class's channel: a cue the tint half hides, so that a probe on a random-ish convnet is
    neither at chance nor perfect and its loss is far from zero.
    """
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    root = Path(root)
    for split, n in per_class.items():
        for channel, label in enumerate(COLORS):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                tint = torch.rand(3, generator=g) * jitter
                pixels = torch.rand(size, size, 3, generator=g) * 160 + tint
                pixels[..., channel] += contrast
                pixels = pixels.clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root


def convnet_backbone(folder: Path, seed: int = 0, arch: str = "resnet18") -> Path:
    """A timm convnet saved like a local checkpoint (`save_for_hf`: config.json + model.safetensors), whose
    BatchNorms carry the non-trivial state of a trained network: scale 0.5..1.5, running mean ~N(0, 0.3^2),
    running variance 0.3..2.3.

    Such statistics are far from any batch's, so a BatchNorm that normalised with batch statistics (or moved its
    running ones) would visibly change the features the probe was fitted on. A fresh timm ResNet also
    zero-initialises each residual branch's last BatchNorm scale, which no trained checkpoint does.
    """
    import timm
    from timm.models import save_for_hf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    g = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
                module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(0.3 + 2 * torch.rand(module.running_var.shape, generator=g))
    save_for_hf(model, str(folder), safe_serialization=True)
    return folder


# The scenario tests run the whole ladder once per seed; `source_backbones` (tests/ladder/conftest.py) builds one
# source-pretrained backbone for each.
LADDER_SEEDS = [0, 1, 2]


def keyword_ladder_config(
    scenario,
    out: Path,
    *,
    seed: int,
    epochs: int,
    rungs: list[dict],
    multipliers: list[float],
    batch_size: int = 16,
    warmup_ratio: float = 0.0,
    **ladder,
):
    """A ladder recipe on a keyword scenario's csv files (its test csv too, when it has one)."""
    from peft_ladder.config import load_config

    data_files = {"train": str(scenario.train_csv), "validation": str(scenario.validation_csv)}
    if getattr(scenario, "test_csv", None) is not None:
        data_files["test"] = str(scenario.test_csv)
    return load_config(
        None,
        [],
        backbone={"name": str(scenario.backbone)},
        data={"dataset": "csv", "data_files": data_files, "max_length": 16},
        train={
            "epochs": epochs,
            "batch_size": batch_size,
            "head_lr": 3e-2,
            "warmup_ratio": warmup_ratio,
            "seed": seed,
        },
        ladder={"rungs": rungs, "lr_search": {"multipliers": multipliers}, "bootstrap_samples": 1000, **ladder},
        metrics=["accuracy"],
        checkpoint={"each_epoch": False},
        log_with="none",
        output_dir=str(out),
    )
