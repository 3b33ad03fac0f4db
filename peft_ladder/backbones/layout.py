"""The uniform description of a backbone: stem, ordered blocks, neck and head.

Every strategy sees a model only through this description, never through `isinstance`
checks on model classes or hard-coded module paths. It follows timm's `group_matcher`
convention: block regexes whose captured numbers become block indices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch.nn as nn

# timm marks "after every block" groups (e.g. ViT's final `norm`) with this ordinal.
_TIMM_MAX_ORDINAL = 99999
# Prefixes that peft adds in front of the base model's parameter names.
_PEFT_PREFIXES = ("base_model.model.",)

BlockPattern = tuple[str, tuple[int, ...] | None]


@dataclass
class Block:
    """One block of the backbone, the unit that `partial_unfreeze` counts."""

    name: str
    key: tuple[int, ...]
    params: list[str] = field(default_factory=list)


@dataclass
class BackboneLayout:
    """Where every parameter of a backbone belongs.

    Attributes:
        head_modules: module names of the task head (trained in every rung).
        blocks: the ordered blocks (residual stages' blocks, transformer layers).
        stem: parameter names before the first block (embeddings, patch/conv stem).
        neck: parameter names after the last block that are not the head (final norm, pooler).
        block_patterns: regexes (with an optional fixed ordinal) that assign a name to a block.
    """

    head_modules: list[str]
    blocks: list[Block]
    stem: list[str]
    neck: list[str]
    block_patterns: list[BlockPattern]
    neck_modules: list[str] = field(default_factory=list)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def head_params(self) -> list[str]:
        return [n for n in self.all_params() if self.role_of(n)[0] == "head"]

    def all_params(self) -> list[str]:
        return [*self.stem, *(p for b in self.blocks for p in b.params), *self.neck, *self._head]

    def block_index(self, index: int) -> int:
        """Normalise a (possibly negative) block index, with a clear error when out of range."""
        n = self.num_blocks
        if not -n <= index < n:
            raise IndexError(f"block index {index} is out of range: this backbone has {n} blocks (0..{n - 1}).")
        return index % n

    def role_of(self, name: str) -> tuple[str, int]:
        """Return (role, layer_id) for a parameter name, peft-wrapped names included.

        role is one of "stem", "block", "neck", "head"; layer_id counts stem=0, blocks 1..n,
        neck n+1 and head n+2 (the layer ids timm's layer-wise LR decay uses).
        """
        name = strip_peft_prefix(name)
        n = self.num_blocks
        if any(name == m or name.startswith(m + ".") for m in self.head_modules):
            return "head", n + 2
        key = _match_block(name, self.block_patterns)
        if key is not None:
            if key[0] >= _TIMM_MAX_ORDINAL:
                return "neck", n + 1
            return "block", self._block_id[key] + 1
        if any(name.startswith(m + ".") for m in self.neck_modules):
            return "neck", n + 1
        return "stem", 0

    def block_of(self, name: str) -> int | None:
        """Index of the block a parameter belongs to, or None outside the blocks."""
        role, layer_id = self.role_of(name)
        return layer_id - 1 if role == "block" else None

    def __post_init__(self) -> None:
        self._block_id = {b.key: i for i, b in enumerate(self.blocks)}
        self._head: list[str] = []


def strip_peft_prefix(name: str) -> str:
    for prefix in _PEFT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _match_block(name: str, patterns: list[BlockPattern]) -> tuple[int, ...] | None:
    for regex, ordinal in patterns:
        match = re.match(regex, name)
        if match:
            # timm's group_with_matcher: key = captured numbers, then the fixed ordinal as a suffix
            # (ConvNeXt's `(r'^stages\.(\d+)\.downsample', (0,))` puts stage s's downsample in block (s, 0)).
            return tuple(int(g) for g in match.groups() if g is not None) + tuple(ordinal or ())
    return None


def normalise_patterns(blocks: str | list | tuple) -> list[BlockPattern]:
    """Accept timm's `group_matcher()["blocks"]` forms: a regex, or a list of (regex, ordinal)."""
    if isinstance(blocks, str):
        return [(blocks, None)]
    return [(p, None) if isinstance(p, str) else (p[0], p[1]) for p in blocks]


def describe_layout(model: nn.Module, head_modules: list[str], block_patterns: list[BlockPattern]) -> BackboneLayout:
    """Sort every parameter of `model` into stem / blocks / neck / head.

    Parameters that match no block pattern and are not in the head are stem when they come
    before the first block in registration order (the forward order for the models we
    support) and neck when they come after it.

    Raises:
        ValueError: if a head module does not exist or the patterns find no block.
    """
    module_names = {n for n, _ in model.named_modules()}
    missing = [m for m in head_modules if m not in module_names]
    if missing:
        raise ValueError(
            f"head module(s) {missing} do not exist in {type(model).__name__}; "
            f"its top-level modules are {[n for n, _ in model.named_children()]}. Pass `head=` with one of them."
        )
    blocks: dict[tuple[int, ...], Block] = {}
    stem, neck, head, neck_modules = [], [], [], []
    seen_block = False
    for name, _ in model.named_parameters():
        if any(name.startswith(m + ".") for m in head_modules):
            head.append(name)
            continue
        key = _match_block(name, block_patterns)
        if key is not None and key[0] < _TIMM_MAX_ORDINAL:
            seen_block = True
            blocks.setdefault(key, Block(name="", key=key)).params.append(name)
        elif key is not None or seen_block:
            neck.append(name)
            if key is None:
                neck_modules.append(name.rsplit(".", 1)[0])
        else:
            stem.append(name)
    if not blocks:
        raise ValueError(
            f"no parameter of {type(model).__name__} matches the block patterns {block_patterns}; "
            "pass `block_pattern=` with a regex whose captured number is the block index, e.g. r'^encoder\\.layer\\.(\\d+)\\.'."
        )
    ordered = [blocks[k] for k in sorted(blocks)]
    for block in ordered:
        block.name = _common_module_prefix(block.params)
    layout = BackboneLayout(head_modules, ordered, stem, neck, block_patterns, sorted(set(neck_modules)))
    layout._head = head
    return layout


def _common_module_prefix(names: list[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    prefix = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        prefix.append(items[0])
    return ".".join(prefix)
