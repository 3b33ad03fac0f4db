"""Every recipe key with its type, default and description, read from the pydantic models that validate recipes
(`peft-ladder recipe keys`): the reference cannot drift from what the validator accepts."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class RecipeKey:
    key: str  # dotted; `[]` marks the items of a list (`ladder.rungs[].name`)
    type: str
    default: str
    description: str


def recipe_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[RecipeKey]:
    """The keys of `model` (default: a whole recipe), nested sections expanded in place."""
    if model is None:
        from peft_ladder.config import RunConfig

        model = RunConfig
    rows: list[RecipeKey] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = model_in(field.annotation)
        description = " ".join((field.description or "").split())
        if section is not None and name != "rungs":  # rungs are strategies: listed per strategy
            rows.append(RecipeKey(key, "section", _default(field), description))
            inner = f"{key}[]." if _is_list(field.annotation) else f"{key}."
            rows.extend(recipe_keys(section, inner))
        else:
            rows.append(RecipeKey(key, type_name(field.annotation), _default(field), description))
    return rows


def strategy_keys(name: str) -> list[RecipeKey]:
    """A strategy's options (`strategy.<key>` in a train recipe, flat in a ladder rung)."""
    from peft_ladder.strategies import get_strategy

    return recipe_keys(get_strategy(name).config_cls, "strategy.")


def format_keys(rows: list[RecipeKey]) -> str:
    width = max((len(r.key) for r in rows), default=0)
    lines = []
    for r in rows:
        lines.append(f"{r.key:<{width}}  {r.type}  (default: {r.default})")
        if r.description:
            lines.append(f"{'':<{width}}  {r.description}")
    return "\n".join(lines)


def type_name(annotation: Any) -> str:
    """`int | None`, `'auto' | 'cls' | ...`, `list[str]`: how a recipe writer reads a type."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else origin.__name__
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return ", ".join(getattr(v, "name", type(v).__name__) for v in value)
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(_is_list(a) for a in get_args(annotation) if get_origin(annotation) in (Union, types.UnionType))


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (`X | None`, `list[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None
