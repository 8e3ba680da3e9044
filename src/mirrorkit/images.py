"""Fetched images made safe to publish: decoded, scaled and re-encoded with Pillow.

Pure functions, no I/O.  :func:`reencode` is what every downloaded image passes through
before it is stored:

- decoding it proves it is an image (a page or a script served as ``image/png`` fails);
- re-encoding drops everything but the pixels: EXIF (GPS positions, camera serials), XMP,
  ICC profiles and comments (the EXIF orientation is applied first, so nothing turns);
- an image wider than the configured maximum is scaled down, keeping its aspect ratio;
- a decompression bomb (more than :data:`MAX_PIXELS` pixels, Pillow's own default limit)
  is refused before its pixels are decoded, with a one-line reason.

JPEG stays JPEG and WebP stays WebP; PNG, GIF (its first frame: animations are not kept)
and AVIF become PNG, or WebP for AVIF, which Pillow encodes much faster.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from mirrorkit.errors import FetchError

# Pillow's default: about 89 million pixels (a 9,500 x 9,500 picture) is what it decodes
# without complaint.  Set explicitly so a change of default in Pillow is a change here.
MAX_PIXELS = 89_478_485
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Between MAX_PIXELS and twice that Pillow only warns: refused all the same.  One filter
# set once (catch_warnings around each decode would race between threads).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
JPEG_QUALITY = 85
_OUTPUT = {"JPEG": ("JPEG", "image/jpeg"), "WEBP": ("WEBP", "image/webp"),
           "AVIF": ("WEBP", "image/webp")}
_PNG = ("PNG", "image/png")


@dataclass(frozen=True)
class Picture:
    """A re-encoded image: its bytes, their type, and its size in pixels."""

    data: bytes
    media_type: str
    width: int
    height: int


def reencode(data: bytes, url: str, max_width: int) -> Picture:
    """``data`` decoded and written again, at most ``max_width`` pixels wide.

    Raises :class:`FetchError` (one line, naming ``url``) if it is no image Pillow can
    decode, or too many pixels to decode safely.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            return _reencode(img, max_width)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FetchError(f"image refused, more than {MAX_PIXELS:,} pixels"
                         " (a decompression bomb?)", where=url) from e
    except UnidentifiedImageError as e:
        raise FetchError("not an image Pillow can decode", where=url) from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise FetchError(f"broken image: {' '.join(str(e).split()) or type(e).__name__}",
                         where=url) from e
    except Exception as e:
        # Decoders raise what they like on hostile bytes (libavif: RuntimeError): it
        # leaves the image out, not the article.
        raise FetchError(f"broken image: {type(e).__name__}: {' '.join(str(e).split())}",
                         where=url) from e


def _reencode(img: Image.Image, max_width: int) -> Picture:
    codec, media_type = _OUTPUT.get(img.format or "", _PNG)
    if img.format == "JPEG" and img.width > max_width:
        # Decode at a reduced scale (a power of two): far less memory and time.
        img.draft("RGB", (max_width, max(1, img.height * max_width // img.width)))
    img.load()
    picture = ImageOps.exif_transpose(img)
    if picture.width > max_width:
        height = max(1, round(picture.height * max_width / picture.width))
        picture = picture.resize((max_width, height), Image.Resampling.LANCZOS)
    if codec == "JPEG" and picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    elif codec == "PNG" and picture.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        picture = picture.convert("RGBA")
    # Pillow writes back what it read into ``info`` (a JPEG comment, EXIF, ICC and XMP for
    # some formats): keep only what the pixels need.
    picture.info = {k: v for k, v in picture.info.items() if k == "transparency"}
    out = io.BytesIO()
    options: dict[str, object] = {"quality": JPEG_QUALITY} if codec in ("JPEG", "WEBP") else {}
    picture.save(out, codec, **options)
    return Picture(data=out.getvalue(), media_type=media_type, width=picture.width,
                   height=picture.height)
