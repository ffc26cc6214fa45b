"""Label Studio brush RLE, vectorised with numpy.

Label Studio stores a brush region as the run-length encoding of the RGBA bytes of the mask image
(``label_studio_sdk.converter.brush``, after thi.ng's ``rle-pack``). The bit stream is: a 32-bit value
count, a 5-bit ``word size - 1``, four 4-bit ``run-length field size - 1``; then records, each
``flag(1) size-index(2) count(size)`` followed by one word (flag 1: the word repeated count+1 times) or
count+1 words (flag 0: literal values); zero bits pad the stream to whole bytes.

:func:`mask_to_rle` is byte-identical to ``brush.mask2rle`` (word size 8, field sizes 3/4/8/16, each pixel
repeated for the four channels, runs longer than 65536 split, and the sdk's padding rule: a full zero
byte when the stream is already a multiple of 8 bits); :func:`rle_decode` is value-identical to
``brush.decode_rle`` for any header, and :func:`rle_to_mask` expands only the alpha channel. All are
tested against the sdk on thousands of masks.

>>> import numpy as np
>>> mask = np.zeros((4, 6), bool); mask[1:3, 2:5] = True
>>> rle = mask_to_rle(mask)
>>> bool((rle_to_mask(rle, 4, 6) == mask * 255).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_WORD = 8
_SIZES = (3, 4, 8, 16)
_MAX_RUN = 1 << 16
_BLOCK = 1 << 20  # bit positions examined per step of the record walk (bounds memory)


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) mask as Label Studio brush RLE.

    A bool mask is painted with 255; an integer mask (0..255) is encoded with its values as they are, like
    ``label_studio_sdk.converter.brush.mask2rle``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.size == 0:
        raise ValueError("mask is empty")
    if mask.dtype == bool:
        flat = mask.ravel().view(np.uint8) * np.uint8(255)
    else:
        if mask.min() < 0 or mask.max() > 255:
            raise ValueError("mask values must lie in 0..255")
        flat = mask.ravel().astype(np.uint8, copy=False)
    return encode_values(flat, repeat=4)


def run_starts(flat: np.ndarray) -> np.ndarray:
    """The index where each run of equal values of a flat array starts (the first is 0).

    >>> run_starts(np.array([3, 3, 0, 0, 0, 3])).tolist()
    [0, 2, 5]
    """
    return np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))


def encode_values(values: np.ndarray, repeat: int = 1) -> list[int]:
    """RLE-encode a flat uint8 array (each value repeated ``repeat`` times), as ``brush.encode_rle``."""
    values = np.asarray(values, dtype=np.uint8).ravel()
    n = values.size
    starts = run_starts(values)
    lengths = np.diff(np.append(starts, n)).astype(np.int64) * repeat
    run_values = values[starts].astype(np.int64)
    return _encode_runs(lengths, run_values, n * repeat)


def labels_to_rles(labels: np.ndarray, ids: Sequence[int]) -> dict[int, list[int]]:
    """``{k: mask_to_rle(labels == k)}`` for each ``k`` of ``ids`` (byte-identical), from the runs of the
    (H, W) integer label image: one pass over the pixels, then work per object in proportion to its runs,
    instead of a whole-image mask and encoding per object (``K × H × W``: ~0.7 s for 1,000 objects on a
    512² image)."""
    flat = np.asarray(labels).ravel()
    n = flat.size
    if n == 0:
        raise ValueError("mask is empty")
    starts = run_starts(flat)
    ends = np.append(starts[1:], n)
    run_label = flat[starts]
    order = np.argsort(run_label, kind="stable")
    sorted_labels = run_label[order]
    out: dict[int, list[int]] = {}
    for k in ids:
        lo, hi = np.searchsorted(sorted_labels, [k, k + 1])
        idx = order[lo:hi]  # the runs of object k, in order
        bounds = np.empty(2 * idx.size + 2, np.int64)
        bounds[0], bounds[-1] = 0, n
        bounds[1:-1:2], bounds[2:-1:2] = starts[idx], ends[idx]
        seg = np.diff(bounds)  # background, object, background, ..., background
        value = np.zeros(seg.size, np.int64)
        value[1::2] = 255
        keep = seg > 0
        out[int(k)] = _encode_runs(seg[keep] * 4, value[keep], n * 4)
    return out


def _encode_runs(lengths: np.ndarray, run_values: np.ndarray, total: int) -> list[int]:
    """The RLE of runs (``lengths`` values each of ``run_values``; ``total`` values in all)."""
    # Runs longer than 65536 become k full chunks of 65536 (field 0xFFFF) plus a remainder.
    full = np.where(lengths > _MAX_RUN, (lengths - 1) // _MAX_RUN, 0)
    rec_run = np.repeat(np.arange(lengths.size), full + 1)
    last_of_run = np.ones(rec_run.size, bool)
    last_of_run[:-1] = rec_run[1:] != rec_run[:-1]
    rec_len = np.where(last_of_run, lengths[rec_run] - full[rec_run] * _MAX_RUN, _MAX_RUN)
    run_len = lengths[rec_run]
    value = run_values[rec_run]

    # Each record: flag, size index, count field, then the 8-bit value. The sdk picks the field size from
    # the whole run's length, so every chunk of a run longer than 256 uses the 16-bit field.
    idx = np.select([run_len > 256, run_len <= 8, run_len <= 16], [3, 0, 1], 2)
    flag = (run_len > 1).astype(np.int64)
    size = np.array(_SIZES, np.int64)[idx]
    count = rec_len - 1
    nbits = 3 + size + _WORD
    code = (((flag << 2 | idx) << size | count) << _WORD) | value

    header = (total << 21) | ((_WORD - 1) << 16)
    for i, s in enumerate(_SIZES):
        header |= (s - 1) << (12 - 4 * i)
    return _pack([np.array([header], np.int64), code], [np.array([53], np.int64), nbits])


def _pack(codes: Sequence[np.ndarray], widths: Sequence[np.ndarray]) -> list[int]:
    """Concatenate variable-width big-endian codes (each <= 53 bits) into bytes, with the sdk's padding."""
    code = np.concatenate(codes).astype(np.uint64)
    width = np.concatenate(widths).astype(np.int64)
    nbits = int(width.sum())
    nbits_padded = nbits + (8 - nbits % 8)  # the sdk always adds 1..8 zero bits
    ends = np.cumsum(width)
    # Expand each code into its bits (MSB first), vectorised over all bits.
    owner = np.repeat(np.arange(code.size), width)
    shift = (ends[owner] - 1 - np.arange(nbits)).astype(np.uint64)
    bits = np.zeros(nbits_padded, np.uint8)
    bits[:nbits] = (code[owner] >> shift) & np.uint64(1)
    return np.packbits(bits).tolist()


def _as_bytes(rle: Sequence[int] | bytes | np.ndarray) -> np.ndarray:
    if isinstance(rle, list | tuple | bytes | bytearray):
        try:  # the fast path for Label Studio's list of ints (bytes() checks the 0..255 range in C)
            data = np.frombuffer(bytes(rle), np.uint8)
        except (TypeError, ValueError):
            raise ValueError("RLE must be a list of integers 0..255") from None
        if data.size < 7:
            raise ValueError(f"RLE is too short ({data.size} values)")
        return data
    try:
        data = np.asarray(rle)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"RLE is not a list of bytes: {exc}") from None
    if data.ndim != 1 or data.size < 7:
        raise ValueError(f"RLE is too short or not a flat list ({data.size} values)")
    if data.dtype.kind not in "iu" or data.min() < 0 or data.max() > 255:
        raise ValueError("RLE must be a list of integers 0..255")
    return data.astype(np.uint8)


def _byte_windows(padded: np.ndarray) -> np.ndarray:
    """For each byte offset q, the 40 bits starting at byte q (as int64)."""
    b = padded.astype(np.int64)
    n = padded.size - 4
    return b[:n] << 32 | b[1 : n + 1] << 24 | b[2 : n + 2] << 16 | b[3 : n + 3] << 8 | b[4 : n + 4]


def _windows(bw: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 32 bits starting at each bit position, as int64 (bit 31 = the bit at ``pos``)."""
    return (bw[pos >> 3] >> (8 - (pos & 7))) & 0xFFFFFFFF


_STRIDE = 8  # records per step of the sequential part of the record walk (4-64 measured alike)


def _header(bw: np.ndarray) -> tuple[int, int, np.ndarray]:
    num = int(_windows(bw, np.array([0]))[0])
    second = int(_windows(bw, np.array([32]))[0])
    word = (second >> 27) + 1
    if word > 32:
        raise ValueError(f"unsupported RLE word size {word}")
    sizes = np.array([((second >> (23 - 4 * i)) & 0xF) + 1 for i in range(4)], np.uint32)
    return num, word, sizes


def _windows_range(bw: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``_windows(bw, np.arange(start, stop))`` as uint32, by eight strided shifts instead of a gather."""
    first, last = start >> 3, (stop + 7) >> 3
    out = np.empty((last - first, 8), np.uint32)
    chunk = bw[first:last]
    for r in range(8):
        out[:, r] = (chunk >> (8 - r)) & 0xFFFFFFFF
    return out.ravel()[start - 8 * first : stop - 8 * first]


def _fields(bw: np.ndarray, pos: np.ndarray | tuple[int, int], sizes: np.ndarray) -> tuple[np.ndarray, ...]:
    """(flag, size, count) of a record starting at each bit position (uint32 arithmetic); ``pos`` is
    an array of positions or a ``(start, stop)`` range of them."""
    win = _windows_range(bw, *pos) if isinstance(pos, tuple) else _windows(bw, pos).astype(np.uint32)
    flag = win >> np.uint32(31)
    size = sizes[(win >> np.uint32(29)) & np.uint32(3)]
    count = ((win << np.uint32(3)) >> (np.uint32(32) - size)) + np.uint32(1)
    return flag, size, count


class _LiteralRecord(Exception):
    """The repeat-only walk met a literal record (:func:`_records` then walks the general way)."""


def _records(data: np.ndarray) -> tuple[np.ndarray, int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(bit windows, value count, word size, record starts, flags, field sizes, counts)``.

    Masks as Label Studio and :func:`mask_to_rle` write them hold only repeat records, whose length
    depends on their first 3 bits alone: that walk is tried first (:func:`_walk` with ``repeat_only``)
    and the general one is used when it meets a literal record or an error (so errors are the general
    walk's).
    """
    padded = np.concatenate([data, np.zeros(8, np.uint8)])
    bw = _byte_windows(padded)
    num, word, sizes = _header(bw)
    try:
        rec = _walk(bw, padded, data.size * 8, num, word, sizes, repeat_only=True)
    except (_LiteralRecord, ValueError):
        rec = _walk(bw, padded, data.size * 8, num, word, sizes, repeat_only=False)
    flag, size, count = _fields(bw, rec, sizes)
    return bw, num, word, rec, flag.astype(bool), size.astype(np.int64), count.astype(np.int64)


def _walk(
    bw: np.ndarray,
    padded: np.ndarray,
    total_bits: int,
    num: int,
    word: int,
    sizes: np.ndarray,
    repeat_only: bool,
) -> np.ndarray:
    """The start of every record, in order.

    Records are variable-length, so where each starts depends on all before it. For every bit position
    of a block (``_BLOCK`` bits, bounding memory) the record that would start there gives where the next
    one would start (``jump``); ``_STRIDE`` such steps are composed by repeated squaring (3 numpy
    gathers), the chain is walked from the first record ``_STRIDE`` records at a time in Python (about
    1,300 steps for a 1000² mask of 300 nuclei), and the records in between are filled in by
    ``_STRIDE`` vectorised gathers over all the anchors at once.

    ``repeat_only``: every record is taken to be a repeat record, whose length is ``3 + field size +
    word`` — a table of its first 3 bits, read from the unpacked bits instead of a 32-bit window per
    position (about 3x less work); a record found with the literal flag raises :class:`_LiteralRecord`.
    """
    starts: list[np.ndarray] = []
    produced = 0
    p = 53
    if repeat_only:
        bits = np.unpackbits(padded)
        table = np.full(8, _BLOCK + 64, np.int32)  # a literal record's start jumps past the block
        table[4:] = 3 + sizes.astype(np.int32) + word
    while produced < num:
        if p + 3 > total_bits:
            raise ValueError(f"RLE ends after {produced} of {num} values")
        end = min(p + _BLOCK, total_bits)
        n = end - p
        jump = np.empty(n + 1, np.int32)
        if repeat_only:
            b = bits[p : end + 2]
            length = np.take(table, (b[:-2] << 2) | (b[1:-1] << 1) | b[2:])
            np.add(np.arange(n, dtype=np.int32), length, out=jump[:-1])
        else:
            flag, size, count = _fields(bw, (p, end), sizes)
            length = np.uint32(3) + size + np.where(flag, np.uint32(word), np.uint32(word) * count)
            np.minimum(np.arange(n, dtype=np.int64) + length, n, out=jump[:-1], casting="unsafe")
        jump[-1] = n  # the sink: past the block; a jump beyond it is clipped to it by every take below
        far = jump
        for _ in range(_STRIDE.bit_length() - 1):
            far = np.take(far, far, mode="clip")
        anchors = []
        q = 0
        while q < n:
            anchors.append(q)
            q = int(far[q])
        chain = np.empty((len(anchors), _STRIDE), np.int32)
        cur = np.array(anchors, np.int32)
        for k in range(_STRIDE):
            chain[:, k] = cur
            cur = np.take(jump, cur, mode="clip")
        chain = chain.ravel()
        chain = chain[chain < n]
        if repeat_only:
            chain_flag, _, chain_count = _fields(bw, p + chain.astype(np.int64), sizes)
        else:
            chain_count = count[chain]
        # the values produced so far decide where to stop; the next block starts after the last record
        total = produced + np.cumsum(chain_count, dtype=np.int64)
        stop = int(np.searchsorted(total, num)) + 1 if total[-1] >= num else chain.size
        if repeat_only and not chain_flag[:stop].all():
            raise _LiteralRecord
        chain = chain[:stop]
        starts.append(p + chain.astype(np.int64))
        produced = int(total[stop - 1])
        last = int(chain[-1])
        p = p + last + int(length[last])
    if p > total_bits:
        raise ValueError("RLE is truncated: the last record runs past the end of the data")
    return np.concatenate(starts)


def _segments(rle: Sequence[int] | bytes | np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(value count, the value of each segment, its length)``: a repeat record is one segment of
    ``count`` values, a literal record ``count`` segments of one value."""
    data = _as_bytes(rle)
    if int.from_bytes(data[:4].tobytes(), "big") == 0:
        return 0, np.zeros(0, np.uint8), np.zeros(0, np.int64)
    bw, num, word, rec, flag, size, count = _records(data)
    vpos = rec + 3 + size
    nseg = np.where(flag, 1, count)
    if bool(flag.all()):  # the common case (masks from mask_to_rle): no literal records
        seg_pos, seg_len = vpos, count
    else:
        seg_rec = np.repeat(np.arange(rec.size), nseg)
        seg_first = np.cumsum(nseg) - nseg
        k = np.arange(seg_rec.size) - seg_first[seg_rec]
        seg_pos = vpos[seg_rec] + k * word
        seg_len = np.where(flag[seg_rec], count[seg_rec], 1)
    words = (_windows(bw, seg_pos) >> (32 - word)) & ((1 << word) - 1)
    if words.size and words.max() > 255:
        raise ValueError(f"RLE values exceed 255 (word size {word})")
    return num, words.astype(np.uint8), seg_len


def rle_decode(rle: Sequence[int] | bytes | np.ndarray) -> np.ndarray:
    """Decode Label Studio RLE into the flat uint8 array of values (as ``brush.decode_rle``)."""
    num, values, lengths = _segments(rle)
    return np.repeat(values, lengths)[:num]


def rle_to_mask(rle: Sequence[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode brush RLE into a (height, width) uint8 mask, 255 where painted (alpha > 0), else 0.

    Only the alpha channel is expanded (value ``4 i + 3`` is pixel ``i``'s alpha): the mask is written
    straight from the segments, never the 4x larger RGBA array.

    Raises ``ValueError`` naming the problem when the RLE is corrupt or does not hold height×width pixels.
    """
    data = _as_bytes(rle)
    expected = int(height) * int(width) * 4
    num = int.from_bytes(data[:4].tobytes(), "big")
    if num != expected:
        raise ValueError(
            f"RLE holds {num} values ({num / 4:.0f} pixels), expected {height}x{width}x4 = {expected}"
        )
    num, values, lengths = _segments(data)
    # segment j covers values [end_j - len_j, end_j); the alphas in it are the pixels i with
    # start <= 4 i + 3 < end, i.e. i in [ceil((start - 3) / 4), ceil((end - 3) / 4))
    ends = np.minimum(np.cumsum(lengths), num)
    pixels = np.diff(ends // 4, prepend=0)  # ceil((end - 3) / 4) == end // 4
    painted = np.where(values > 0, np.uint8(255), np.uint8(0))
    return np.repeat(painted, pixels).reshape(int(height), int(width))
