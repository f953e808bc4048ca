"""Decode fetched image bytes the way Label Studio shows them, within the pixel limit.

Label Studio's editor shows an image as the browser renders it, with its EXIF
orientation applied, and stores box coordinates in percent of that picture and
its size as ``original_width``/``original_height``. A detector must therefore
see the same upright picture: ``decode_upright`` applies the EXIF orientation,
and reports the displayed size before any downscaling.

This is the one place images are decoded (``LabelStudioMLBase.task_images`` calls it), so every
guard lives here: the pixel limit read from the header, Pillow's own decompression-bomb limit
set from the same setting, and a broken image turned into that task's ``MediaError``. It ships
with the image variants only (it needs Pillow).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from .media import MediaError, MediaResolver

if TYPE_CHECKING:
    from .interaction import TaskCache

# Pillow warns about images between its limit and twice it; the check below refuses those clearly instead.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
ORIENTATION_TAG = 0x0112
#: EXIF orientations that turn the picture by 90 or 270 degrees (width and height swap on screen)
QUARTER_TURNS = {5, 6, 7, 8}


@dataclass(frozen=True)
class UprightImage:
    """An RGB image as Label Studio displays it, possibly downscaled, and its displayed size in pixels."""

    image: Image.Image
    width: int  # original_width as Label Studio stores it
    height: int  # original_height

    @property
    def scale(self) -> float:
        """Pixels of ``image`` per displayed pixel (1.0 when not downscaled)."""
        return self.image.width / self.width


def decode_upright(data: bytes, max_pixels: int, max_side: int | None = None) -> UprightImage:
    """Bytes -> upright RGB image no larger than ``max_side`` on its longer side, or ``MediaError``.

    The size is read from the header before decoding: a small file can declare a huge image, so
    images over ``max_pixels`` (MEDIA_MAX_MEGAPIXELS) are refused without decoding them.
    """
    try:
        image: Image.Image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise MediaError(
                f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP), over the "
                f"{max_pixels / 1e6:g} MP limit; resize it or raise MEDIA_MAX_MEGAPIXELS"
            )
        if max_side is not None:
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size, much faster
        if image.getexif().get(ORIENTATION_TAG) in QUARTER_TURNS:
            width, height = height, width
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGB")
        if max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        return UprightImage(image, width, height)
    except Image.DecompressionBombError as exc:  # Pillow's own check, which follows MEDIA_MAX_MEGAPIXELS
        raise MediaError(f"image refused: {exc}; resize it or raise MEDIA_MAX_MEGAPIXELS") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"not an image Pillow can read ({len(data)} bytes): {exc}") from None


def load_upright(media: MediaResolver, references: Iterable[tuple[object, object]],
                 max_side: int | None = None, cache: TaskCache | None = None) -> list[UprightImage | MediaError]:
    """Each ``(reference, task id)``'s decoded upright image, or the ``MediaError`` saying why not.

    One task's unreadable image is that task's error only; the others load. With ``cache`` (an
    interactive call: the annotator clicks again on the same task) decoded images are kept there
    and looked up first; a failure is not kept, so a fixed link loads on the next click.
    """
    # Pillow's own decompression-bomb limit (refusal at twice it) follows ours, for any decode path.
    Image.MAX_IMAGE_PIXELS = media.max_pixels
    references = list(references)
    if cache is None:
        return [_decoded(item, media.max_pixels, max_side) for item in media.fetch_many(references)]
    return [_kept(media, cache, reference, max_side) for reference in references]


def _decoded(fetched: bytes | MediaError, max_pixels: int, max_side: int | None) -> UprightImage | MediaError:
    if isinstance(fetched, MediaError):
        return fetched
    try:
        return decode_upright(fetched, max_pixels, max_side)
    except MediaError as exc:
        return exc


def _kept(media: MediaResolver, cache: TaskCache, reference: tuple[object, object],
          max_side: int | None) -> UprightImage | MediaError:
    def load() -> UprightImage:
        [picture] = [_decoded(item, media.max_pixels, max_side) for item in media.fetch_many([reference])]
        if isinstance(picture, MediaError):
            raise picture
        return picture

    uri, task_id = reference
    try:
        return cache.get_or_compute(("image", task_id, str(uri), max_side), load)
    except MediaError as exc:
        return exc
