"""Reading the files a converter is given, checked: label text as UTF-8, JSON parsed, images verified before
use.

A converter never copies an image into a dataset, or sizes boxes by it, without :func:`verify_image`
first: an empty file, a truncated PNG or JPEG, random bytes, a TIFF without pages or whose data runs
past the end of the file, or more pixels than the limit raise :class:`~converters.images.ImageError`
naming the file and the reason. The check is cheaper than decoding: PNG chunks are read and their CRCs
checked (no inflating), a JPEG is decoded at 1/8 scale (it has no checksums; libjpeg's fastest mode), a
TIFF's first page must parse and its data lie inside the file; other formats are decoded.

>>> verify_image(data=b"", name="x.png")
Traceback (most recent call last):
...
converters.images.ImageError: x.png: empty file (0 bytes)
>>> import io, numpy as np; from PIL import Image
>>> buf = io.BytesIO(); Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(buf, "PNG")
>>> verify_image(data=buf.getvalue(), name="x.png")
ImageInfo(width=5, height=3, format='PNG')
>>> verify_image(data=buf.getvalue()[:-12], name="x.png")  # no IEND chunk
Traceback (most recent call last):
...
converters.images.ImageError: x.png: not a readable image (OSError: truncated PNG file)
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from converters.images import DEFAULT_MAX_PIXELS, TIFF_SUFFIXES, ImageError, open_regular, read_regular

COPY_FORMATS = frozenset({"PNG", "JPEG", "MPO"})
"""Image formats a dataset takes as they are (anything else is decoded and written as PNG)."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class InputError(ValueError):
    """An input file that cannot be read as what it should be; the message says why (the caller names it)."""


def read_text(path: str | Path) -> str:
    """A label file's text: UTF-8 (a byte-order mark allowed); :class:`InputError` when it is not.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"; _ = p.write_bytes(b"tum\\xf6r")
    >>> read_text(p)
    Traceback (most recent call last):
    ...
    converters.inputs.InputError: not UTF-8 text (byte 0xf6 at offset 3)
    """
    try:
        data = read_regular(path)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's value; :class:`InputError` when it cannot be read or is not valid JSON.

    orjson parses it (2-3x faster on a large export); the standard library parses what orjson refuses but
    Python's ``json`` writes (NaN, infinity, integers beyond 64 bits), and words the errors.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.json"; _ = p.write_bytes(b'{"x": NaN, "n": 18446744073709551616}')
    >>> read_json(p)
    {'x': nan, 'n': 18446744073709551616}
    >>> _ = p.write_bytes(b"[[[") ; read_json(p)
    Traceback (most recent call last):
    ...
    converters.inputs.InputError: not valid JSON (Expecting value: line 1 column 4 (char 3))
    """
    try:
        raw = read_regular(path)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})") from None
    try:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return json.loads(raw)
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of > 4300 digits
        raise InputError(f"not valid JSON ({exc})") from None


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    """PIL's format name (``PNG``, ``JPEG``, ``TIFF``...)."""


def verify_image(
    source: str | Path | None = None,
    *,
    data: bytes | None = None,
    name: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Check that an image file (``source``) or its bytes (``data``) is complete and readable.

    Returns its size and format; raises :class:`ImageError` ("``name``: reason") otherwise.
    """
    where = name or str(source)
    try:
        if data is not None:
            size = len(data)
            stream: BinaryIO = io.BytesIO(data)
        else:
            if source is None:
                raise ImageError(f"{where}: no image given")
            stream = open_regular(source)
            size = os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise ImageError(f"{where}: cannot read ({exc.strerror or exc})") from None
    with stream:
        if size == 0:
            raise ImageError(f"{where}: empty file (0 bytes)")
        head = stream.read(4)
        stream.seek(0)
        if head in _TIFF_MAGIC or Path(where).suffix.lower() in TIFF_SUFFIXES:
            return _verify_tiff(stream, size, where, max_pixels)
        return _verify_pil(stream, size, where, max_pixels)


def _verify_tiff(stream: BinaryIO, size: int, where: str, max_pixels: int) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(stream) as tif:
            page = tif.pages.first
            shape = tuple(page.shape)
            ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            h, w = int(shape[0]), int(shape[1])
    except Exception as exc:  # tifffile raises many types (IndexError, ValueError, TiffFileError...)
        raise ImageError(f"{where}: not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if h < 1 or w < 1:
        raise ImageError(f"{where}: not a readable TIFF (page shape {shape})")
    if w * h > max_pixels:
        raise ImageError(f"{where}: {w}x{h} pixels, more than the limit {max_pixels}")
    if not ends or max(ends) > size:
        raise ImageError(f"{where}: not a readable TIFF (its pixel data runs past the end of the file)")
    return ImageInfo(w, h, "TIFF")


def _verify_pil(stream: BinaryIO, size: int, where: str, max_pixels: int) -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(stream) as im:
            w, h = im.size
            fmt = str(im.format)
            if w < 1 or h < 1:
                raise ImageError(f"{where}: an image of {w}x{h} pixels")
            if w * h > max_pixels:
                raise ImageError(f"{where}: {w}x{h} pixels, more than the limit {max_pixels}")
            if fmt == "PNG":
                im.verify()  # every chunk's CRC, up to IEND
            elif fmt in ("JPEG", "MPO"):  # no checksums: decode it, at 1/8 scale (libjpeg's fastest)
                im.draft("RGB", (max(w // 8, 1), max(h // 8, 1)))
                im.load()
            else:
                im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{where}: not a readable image (not a known image format, or its header is damaged)"
        ) from None
    except Exception as exc:  # PIL raises many types for corrupt files (and DecompressionBombError)
        raise ImageError(f"{where}: not a readable image ({type(exc).__name__}: {exc})") from None
    return ImageInfo(w, h, fmt)
