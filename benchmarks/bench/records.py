"""Ratio records and Markdown tables, shared by the sections, the targets and the report."""

from __future__ import annotations

from typing import Any


def get_path(data: dict[str, Any], path: list[str]) -> Any:
    for key in path:
        data = data[key]
    return data


def ratio(results: dict[str, Any], of: list[str], to: list[str]) -> dict[str, Any]:
    """A ratio that names the two numbers it divides (paths into the results), so it can be checked."""
    return {"value": get_path(results, of) / get_path(results, to), "of": of, "to": to}


def fmt_ratio(r: dict[str, Any] | None) -> str:
    return "n/a" if r is None else f"{r['value']:.2f}x"


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
