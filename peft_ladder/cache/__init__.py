"""Pay for the frozen part of a backbone once: cached activations, keyed by what they depend on."""

from peft_ladder.cache.cached import (
    CachedData,
    CachedTail,
    KnownRows,
    activation_key,
    build_cached_data,
    cache_refusal,
    cached_activations,
    cached_logits,
    fill_cache,
    plan_cut,
)
from peft_ladder.cache.store import default_cache_dir
from peft_ladder.cache.tail import Cut, TailUnsupported, build_tail, run_prefix

__all__ = [
    "CachedData",
    "CachedTail",
    "Cut",
    "KnownRows",
    "TailUnsupported",
    "activation_key",
    "build_cached_data",
    "cache_refusal",
    "cached_activations",
    "build_tail",
    "cached_logits",
    "default_cache_dir",
    "fill_cache",
    "plan_cut",
    "run_prefix",
]
