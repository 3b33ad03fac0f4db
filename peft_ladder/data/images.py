"""Images decoded by us rather than by `datasets`, so that a file that does not decode is named."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


def open_image(item: Any) -> Image.Image:
    """An RGB image from a `datasets.Image(decode=False)` value ({"bytes", "path"}) or a PIL image.

    Raises:
        ValueError: naming the file (or saying the row held bytes only) and the decoder's complaint.
    """
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    path, data = item.get("path"), item.get("bytes")
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            return image.convert("RGB")
    except _DECODE_ERRORS as err:
        where = path or "an image stored as bytes"
        raise ValueError(
            f"image {where} does not decode ({err}); fix or remove it, or set data.skip_corrupt_images=true to "
            "drop such rows (they are counted in the run's notes)."
        ) from None


def decodes(item: Any) -> bool:
    """Whether `open_image` would succeed (the whole image is read: a truncated file fails here too)."""
    try:
        open_image(item)
    except ValueError:
        return False
    return True
