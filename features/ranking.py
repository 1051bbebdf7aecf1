"""Exact ranks of more scores than memory holds: an external distribution sort.

The rank of row ``i`` among scores ``s_0, ..., s_{n-1}`` is

    rank_i = 1 + #{j : s_j > s_i} + #{j < i : s_j = s_i}

(1 = the highest score; equal scores keep file order), the rank a stable sort by
descending score gives. :func:`exact_ranks` computes it for scores held on disk, with
memory bounded by two constants, ``block`` and ``chunk``, whatever ``n`` is:

1. each score becomes a 64-bit *key* whose ascending order is the descending order of the
   scores (:func:`score_keys`), so a stable sort of keys is the ranking;
2. a source of ``n <= block`` keys is sorted in memory (:func:`stable_argsort`);
3. a larger one is split by the next 11 bits of its keys: one pass counts the keys per
   digit value, consecutive digit values are grouped into at most ~2 x 64 buckets of
   about ``max(block, n / 64)`` keys, a second pass appends each key to its bucket's file
   (in source order, so ties stay in file order within a bucket), and each bucket is
   ranked the same way, recursively, starting at ``1 + (keys in earlier buckets)``;
4. a last pass over the source gives every row its rank back in source order: each
   bucket's ranks are in the order its keys were appended, so the next rank of a bucket is
   that of its next row of the source.

A bucket of a single digit value moves on to the next 11 bits; when no bits are left, all
its keys are equal and their ranks are consecutive, in file order. Every pass reads or
writes the files sequentially, ``chunk`` keys at a time. The files are anonymous
(``tempfile.TemporaryFile``: unlinked at once), so nothing is left behind, even by a
killed process; they go to ``tempfile.gettempdir()`` (``$TMPDIR``, else ``/tmp``) and need
about 16 bytes per row at each level of the recursion (one or two levels up to ~10^9 rows).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np

#: Keys sorted in memory at once (8 MiB of keys, ~24 MiB with the sort's work arrays).
BLOCK = 1 << 20
#: Keys read, written or bucketed at a time in the streaming passes.
CHUNK = 1 << 18
DIGIT_BITS = 11
MAX_BUCKETS = 64
_SIGN = np.uint64(1 << 63)


def score_keys(p: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is the descending order of the float64 scores.

    The IEEE-754 bit pattern of a non-negative float grows with its value; with the sign
    bit set on non-negative values and every bit flipped on negative ones, the patterns of
    all floats sort as their values do; flipping the result once more makes the order
    descending. ``-0.0`` is first made ``0.0`` so that the two tie.
    """
    bits = (np.asarray(p, dtype=np.float64) + 0.0).view(np.uint64)
    ascending = np.where(bits >= _SIGN, ~bits, bits | _SIGN)
    return ~ascending


def scores_of(keys: np.ndarray) -> np.ndarray:
    """The float64 scores of :func:`score_keys`' keys (its inverse)."""
    ascending = ~np.asarray(keys, dtype=np.uint64)
    bits = np.where(ascending >= _SIGN, ascending & ~_SIGN, ~ascending)
    return bits.view(np.float64)


def stable_argsort(k: np.ndarray) -> np.ndarray:
    """``np.argsort(k, kind="stable")`` of a 1-d integer array (the keys): the same
    permutation, in about a third of the time.

    NumPy's stable sort of 64-bit keys is a merge sort; its default sort is several times
    faster (vectorised where the CPU allows) but leaves equal keys in any order. So: sort
    unstably, number the distinct keys in sorted order ``g = 0, 1, ...``, and sort the
    unique values ``g n + i`` (``i`` the row): their order is by key, then by row, which
    is the stable order, and ``(g n + i) mod n`` gives the rows back.
    """
    n = len(k)
    if n * n >= 2**63:  # g n + i would overflow (beyond 3 10^9 keys in memory)
        return np.argsort(k, kind="stable")
    order = np.argsort(k)
    if n < 2:
        return order
    ks = k[order]
    g = np.zeros(n, dtype=np.int64)
    np.cumsum(ks[1:] != ks[:-1], out=g[1:])
    g *= n
    g += order
    g.sort()
    return g % n


class Spill:
    """An anonymous temporary file of one dtype's values, appended then read in order.

    Parameters
    ----------
    dtype : numpy dtype
    """

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.n = 0
        self._fh = tempfile.TemporaryFile(prefix="propensity-")  # closed by close()

    def append(self, values: np.ndarray) -> None:
        """Write ``values`` after those already written."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        try:
            self._fh.write(memoryview(values).cast("B"))
        except OSError as exc:  # a full disk: name where the file is, it has no name
            raise OSError(exc.errno, exc.strerror,
                          f"a temporary file in {tempfile.gettempdir()}") from None
        self.n += len(values)

    def rewind(self) -> None:
        """Start reading from the first value."""
        self._fh.flush()
        self._fh.seek(0)

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` values (fewer at the end)."""
        out = np.empty(count, dtype=self.dtype)
        got = self._fh.readinto(memoryview(out).cast("B"))
        return out[: got // self.dtype.itemsize]

    def chunks(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        """Every value, from the first, ``size`` at a time."""
        self.rewind()
        for _ in range(0, self.n, size):
            yield self.read(size)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exact_ranks(keys: Spill, block: int = BLOCK, chunk: int = CHUNK) -> Spill:
    """The rank of every key of ``keys`` (1 = smallest key; equal keys in order), exactly.

    Parameters
    ----------
    keys : Spill of uint64
        :func:`score_keys` of the scores, in file order.
    block, chunk : int
        Keys sorted in memory at once; keys streamed at a time.

    Returns
    -------
    Spill of int64
        The ranks, in the order of ``keys`` (the caller closes it).
    """
    ranks = Spill(np.int64)
    try:
        _rank(keys, 0, 64, ranks, block, chunk)
    except BaseException:
        ranks.close()
        raise
    return ranks


def _rank(src: Spill, base: int, bits: int, sink: Spill, block: int, chunk: int) -> None:
    """Append to ``sink`` the ranks ``base + 1 ...`` of the keys of ``src`` in its order.

    All keys of ``src`` agree above their lowest ``bits`` bits.
    """
    n = src.n
    if bits == 0:  # all keys equal: consecutive ranks, in file order
        for start in range(0, n, chunk):
            sink.append(np.arange(base + start + 1, base + min(start + chunk, n) + 1))
        return
    if n <= block:
        src.rewind()
        k = src.read(n)
        order = stable_argsort(k)
        r = np.empty(n, dtype=np.int64)
        r[order] = np.arange(base + 1, base + n + 1)
        sink.append(r)
        return
    width = min(DIGIT_BITS, bits)
    shift = np.uint64(bits - width)
    mask = np.uint64((1 << width) - 1)

    def digit(k: np.ndarray) -> np.ndarray:
        return ((k >> shift) & mask).astype(np.intp)

    counts = np.zeros(1 << width, dtype=np.int64)
    for k in src.chunks(chunk):
        counts += np.bincount(digit(k), minlength=1 << width)
    # consecutive digit values grouped into buckets of about `target` keys
    target = max(block, -(-n // MAX_BUCKETS))
    bucket_of = np.empty(1 << width, dtype=np.intp)
    sizes, digits_in = [0], [0]
    for d, c in enumerate(counts.tolist()):
        if c and sizes[-1] and sizes[-1] + c > target:
            sizes.append(0)
            digits_in.append(0)
        bucket_of[d] = len(sizes) - 1
        sizes[-1] += c
        digits_in[-1] += bool(c)
    if len(sizes) == 1:  # one digit value: the next bits decide
        _rank(src, base, bits - width, sink, block, chunk)
        return
    parts = [Spill(np.uint64) for _ in sizes]
    ranks: list[Spill] = []
    try:
        for k in src.chunks(chunk):
            _scatter(k, bucket_of[digit(k)], parts)
        start = base
        for size, many, part in zip(sizes, digits_in, parts, strict=True):
            ranks.append(Spill(np.int64))
            # a bucket of one digit value goes on with the next bits, one of several
            # values is split again on the same digit (it is smaller than n)
            _rank(part, start, bits - width if many == 1 else bits, ranks[-1], block, chunk)
            part.close()
            start += size
        for r in ranks:
            r.rewind()
        for k in src.chunks(chunk):
            b = bucket_of[digit(k)]
            order = np.argsort(b, kind="stable")
            out = np.empty(len(k), dtype=np.int64)
            stop = 0
            for j, c in enumerate(np.bincount(b, minlength=len(parts)).tolist()):
                if c:
                    out[order[stop : stop + c]] = ranks[j].read(c)
                    stop += c
            sink.append(out)
    finally:
        for f in parts + ranks:
            f.close()


def _scatter(k: np.ndarray, bucket: np.ndarray, parts: list[Spill]) -> None:
    """Append each key of ``k`` to the spill of its bucket, keeping their order."""
    order = np.argsort(bucket, kind="stable")
    ks = k[order]
    stop = 0
    for j, c in enumerate(np.bincount(bucket, minlength=len(parts)).tolist()):
        if c:
            parts[j].append(ks[stop : stop + c])
            stop += c
