"""The example recipes, addressable by name: `--recipe tiny/minilm_ladder`, or `--recipe minilm_ladder` when the
stem is unique.

They live at the top of the repository (`recipes/`) and ship inside the wheel as `peft_ladder/recipes/`
(pyproject's `package-dir`), so a pip user has them too. `recipes/accelerate/` holds Accelerate launch configs,
not recipes: they are passed to `accelerate launch --config_file`, never to `--recipe`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
NOT_RECIPES = ("accelerate",)  # sub-folders of recipes/ that hold other kinds of YAML


def recipes_dir() -> Path | None:
    """The packaged recipes: inside the installed package, else the checkout's top-level `recipes/`."""
    for folder in (_PACKAGE / "recipes", _PACKAGE.parent / "recipes"):
        if folder.is_dir():
            return folder
    return None


def recipe_names() -> list[str]:
    """Every packaged recipe as `folder/stem` (e.g. `tiny/minilm_ladder`)."""
    root = recipes_dir()
    if root is None:
        return []
    return sorted(
        path.relative_to(root).with_suffix("").as_posix()
        for path in root.rglob("*.yaml")
        if path.relative_to(root).parts[0] not in NOT_RECIPES
    )


def find_recipe(name: str) -> Path | None:
    """The packaged recipe `name` names (`tiny/minilm_ladder`, `minilm_ladder`, with or without `.yaml`).

    Returns:
        Its path; None when no packaged recipe has that name.

    Raises:
        LookupError: the stem names several recipes (`lora`: bert/lora, resnet/lora, vit/lora).
    """
    root = recipes_dir()
    wanted = name.removesuffix(".yaml").removesuffix(".yml").strip("/")
    if root is None or not wanted or Path(wanted).is_absolute() or ".." in Path(wanted).parts:
        return None
    names = recipe_names()
    if wanted in names:
        return root / f"{wanted}.yaml"
    matches = [n for n in names if n.rsplit("/", 1)[-1] == wanted]
    if len(matches) > 1:
        raise LookupError(f"recipe {name!r} names several packaged recipes ({', '.join(matches)}); pick one.")
    return root / f"{matches[0]}.yaml" if matches else None
