"""Images are decoded and re-encoded before they are stored (mirrorkit.images)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mirrorkit import images
from mirrorkit.errors import FetchError

URL = "https://news.example/img/x"


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def test_metadata_is_dropped_and_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # GPSInfo: latitude
    data = encoded(Image.new("RGB", (40, 20), (200, 10, 10)), "JPEG", exif=exif,
                   comment=b"taken at the safe house")
    assert b"SecretCam" in data and b"safe house" in data
    picture = images.reencode(data, URL, max_width=1600)
    assert (picture.media_type, picture.width, picture.height) == ("image/jpeg", 20, 40)
    assert b"SecretCam" not in picture.data and b"safe house" not in picture.data
    with Image.open(io.BytesIO(picture.data)) as img:
        assert not img.getexif()


@pytest.mark.parametrize(("fmt", "media_type"), [
    pytest.param("PNG", "image/png", id="png"),
    pytest.param("GIF", "image/png", id="gif-to-png"),
    pytest.param("WEBP", "image/webp", id="webp"),
    pytest.param("JPEG", "image/jpeg", id="jpeg"),
])
def test_wide_images_are_scaled_down_keeping_their_shape(fmt: str, media_type: str) -> None:
    data = encoded(Image.new("RGB", (3000, 1500), (10, 200, 10)), fmt)
    picture = images.reencode(data, URL, max_width=1000)
    assert (picture.media_type, picture.width, picture.height) == (media_type, 1000, 500)
    with Image.open(io.BytesIO(picture.data)) as img:
        assert img.size == (1000, 500)


def test_narrow_image_keeps_its_size() -> None:
    picture = images.reencode(encoded(Image.new("RGB", (300, 200)), "PNG"), URL, 1000)
    assert (picture.width, picture.height) == (300, 200)


def test_decompression_bomb_is_refused_in_one_line() -> None:
    Image.MAX_IMAGE_PIXELS = None
    try:
        # Just over the limit: Pillow only warns there; mirrorkit refuses all the same.
        data = encoded(Image.new("1", (10_000, 9_000)), "PNG")
    finally:
        Image.MAX_IMAGE_PIXELS = images.MAX_PIXELS
    with pytest.raises(FetchError) as caught:
        images.reencode(data, URL, 1600)
    assert str(caught.value) == (
        f"{URL}: image refused, more than 89,478,485 pixels (a decompression bomb?)")


@pytest.mark.parametrize(("data", "message"), [
    pytest.param(b"<svg><script>alert(1)</script></svg>", "not an image Pillow can decode",
                 id="svg"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "broken image",
                 id="truncated-png"),
])
def test_what_is_not_an_image_fails_in_one_line(data: bytes, message: str) -> None:
    with pytest.raises(FetchError) as caught:
        images.reencode(data, URL, 1600)
    assert str(caught.value).startswith(f"{URL}: {message}")
    assert "\n" not in str(caught.value)


def test_png_text_and_icc_profile_are_dropped() -> None:
    from PIL import ImageCms, PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "SecretName")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(Image.new("RGBA", (10, 10)), "PNG", pnginfo=text, icc_profile=icc)
    assert b"SecretName" in data
    picture = images.reencode(data, URL, 1600)
    assert b"SecretName" not in picture.data
    with Image.open(io.BytesIO(picture.data)) as img:
        assert "icc_profile" not in img.info
        assert img.mode == "RGBA"
