"""Opening PubMed XML sources as byte streams, tolerant of truncated/corrupt gzip.

A *source* is a path (plain ``.xml`` or gzip, detected by its magic bytes rather than its name),
``bytes``, or a binary file object.  Gzip is decoded by :class:`SafeGzipReader`, which hands over every
byte it could decompress and then reports end-of-file, remembering *why* it stopped early, so that the
XML parser keeps every complete record that precedes a truncation (``gzip.GzipFile`` raises instead and
loses the last decompressed block).
"""

from __future__ import annotations

import io
import logging
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
_READ_SIZE = 1 << 16  # compressed bytes per read of the underlying file
_OUT_CHUNK = 1 << 16  # most decompressed bytes produced per step (and per read): deflate expands ~1000x

log = logging.getLogger(__name__)

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class SafeGzipReader(io.RawIOBase):
    """Streaming gzip decoder (multi-member aware) that never raises mid-stream.

    On a truncated stream or corrupt data it returns what it has, then ``b""``; ``fault`` then holds a
    human-readable reason (``None`` for a clean end).  Memory stays bounded whatever the compression
    ratio: at most one block of compressed input (``_READ_SIZE``) and one chunk of decompressed output
    (``_OUT_CHUNK``) are held, and the time is linear in the decompressed size.  (Decompressing a whole
    input block at once turned 64 KB of compressed spaces into 64 MB held in memory, which every read
    then re-copied: quadratic.)
    """

    def __init__(self, raw: BinaryIO, prefix: bytes = b""):
        self._raw = raw
        self._pending = prefix  # compressed bytes not yet fed to the decompressor
        self._dec = zlib.decompressobj(wbits=31)
        self._member_started = False
        self._may_hold_output = False  # the last step filled its chunk: zlib may have more without input
        self._out = b""  # the current chunk of decompressed bytes ...
        self._pos = 0  # ... of which _out[_pos:] is not handed over yet
        self._eof = False
        self.fault: str | None = None
        self.compressed_bytes = len(prefix)
        self.decompressed_bytes = 0

    def readable(self) -> bool:
        return True

    def _next_input(self) -> bytes:
        try:
            data = self._raw.read(_READ_SIZE)
        except OSError as exc:
            self.fault = f"read error after {self.compressed_bytes} compressed bytes: {exc}"
            return b""
        return data or b""

    def _fill(self) -> None:
        """Make ``_out[_pos:]`` non-empty, or set ``_eof``."""
        while self._pos >= len(self._out) and not self._eof:
            if not self._pending and not self._may_hold_output:
                self._pending = self._next_input()
                if not self._pending:
                    # Input exhausted: a clean end only if the current gzip member finished.
                    if self._member_started and not self._dec.eof and self.fault is None:
                        self.fault = (
                            f"gzip stream truncated after {self.compressed_bytes} compressed / "
                            f"{self.decompressed_bytes} decompressed bytes"
                        )
                    self._eof = True
                    return
                self.compressed_bytes += len(self._pending)
            try:
                self._out, self._pos = self._step(), 0
            except zlib.error as exc:
                self.fault = f"corrupt gzip data after {self.decompressed_bytes} decompressed bytes: {exc}"
                self._out, self._pos = b"", 0
                self._eof = True
                return

    def _step(self) -> bytes:
        """Decompress at most ``_OUT_CHUNK`` bytes from the pending input (may return ``b""``)."""
        data, self._pending = self._pending, b""
        if self._dec.eof:  # a new gzip member follows (NLM files are single-member, but be correct)
            data = data.lstrip(b"\x00")  # zero padding after a member, as gzip(1) allows
            if not data:
                return b""
            self._dec = zlib.decompressobj(wbits=31)
        self._member_started = True
        chunk = self._dec.decompress(data, _OUT_CHUNK)
        # input zlib had no room to decompress (the chunk is full) comes back as the unconsumed tail;
        # the next member's bytes as unused data
        self._pending = self._dec.unused_data if self._dec.eof else self._dec.unconsumed_tail
        self._may_hold_output = len(chunk) == _OUT_CHUNK and not self._dec.eof
        self.decompressed_bytes += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        self._fill()
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while True:
                self._fill()
                if self._pos >= len(self._out):
                    return b"".join(chunks)
                chunks.append(self._out[self._pos :])
                self._pos = len(self._out)
        self._fill()
        data = self._out[self._pos : self._pos + size]
        self._pos += len(data)
        return data


class ByteStream:
    """A readable binary stream plus what is needed to report/restart: its fault and a reopen hook."""

    def __init__(self, stream: BinaryIO, gzip_reader: SafeGzipReader | None, closer, reopen):
        self.stream = stream
        self.gzip_reader = gzip_reader
        self._closer = closer
        self.reopen = reopen  # () -> ByteStream, or None when the source cannot be read twice

    @property
    def fault(self) -> str | None:
        return self.gzip_reader.fault if self.gzip_reader is not None else None

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()


def _wrap(raw: BinaryIO, closer, reopen) -> ByteStream:
    head = raw.read(2) or b""
    if head == GZIP_MAGIC:
        reader = SafeGzipReader(raw, prefix=head)
        return ByteStream(reader, reader, closer, reopen)
    return ByteStream(_Prefixed(head, raw), None, closer, reopen)


class _Prefixed(io.RawIOBase):
    """``raw`` with ``prefix`` (bytes already consumed while sniffing) put back in front."""

    def __init__(self, prefix: bytes, raw: BinaryIO):
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0:
                data, self._prefix = self._prefix + (self._raw.read() or b""), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._raw.read(size) or b""

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_source(source: Source) -> ByteStream:
    """Open ``source`` as a decompressed byte stream. ``OSError`` if a path cannot be opened."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)

        def reopen_bytes() -> ByteStream:
            return _wrap(io.BytesIO(data), None, reopen_bytes)

        return reopen_bytes()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)

        def reopen_path() -> ByteStream:
            fh = open(path, "rb")  # noqa: SIM115 -- closed by ByteStream.close()
            return _wrap(fh, fh.close, reopen_path)

        return reopen_path()
    if hasattr(source, "read"):
        start = source.tell() if _seekable(source) else None

        def reopen_fileobj() -> ByteStream:
            source.seek(start)
            return _wrap(source, None, reopen_fileobj)

        return _wrap(source, None, reopen_fileobj if start is not None else None)
    raise TypeError(
        f"unsupported PubMed source type {type(source).__name__}: expected a path, bytes or a binary file"
    )


def _seekable(fileobj) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# --- record splitter for recovery after an XML fault ------------------------------------------------

RECORD_TAGS = (b"PubmedArticle", b"PubmedBookArticle", b"DeleteCitation", b"MedlineCitation")
_START = re.compile(rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation|MedlineCitation)[\s>/]")


def split_records(stream: ByteStream, legacy: bool) -> Iterator[tuple[str, bytes | None]]:
    """Yield ``(tag, chunk)`` for each top-level record found textually in ``stream``.

    Used only to resume after the streaming parser hit malformed XML: each chunk runs from a record's
    start tag to its end tag and is parsed on its own.  A chunk whose end tag is missing (another record
    starts first, or the data ends) is yielded as ``(tag, None)``.  ``MedlineCitation`` is a top-level
    record only in the legacy ``MedlineCitationSet`` format (``legacy=True``); elsewhere it is nested.

    Linear in the stream's length: the buffer holds one record at most (from its start tag on), and
    while a record is incomplete only the bytes each new block adds are searched (rescanning the whole
    buffer at every block made a record of 40 MB of compressible spaces take minutes).  Memory is
    bounded too: a record larger than ``_MAX_RECORD`` bytes (no real PubMed record comes near) is handed
    over cut at that size, so that parsing it reports it as malformed with its PMID, and the rest of it is
    skipped without being kept.
    """
    buf = bytearray()
    eof = False
    pos = 0  # where the search for the next record start resumes

    def read_more() -> None:
        nonlocal eof
        data = stream.read(_READ_SIZE)
        if data:
            buf.extend(data)
        else:
            eof = True

    while True:
        m = _find_start(buf, pos, legacy)
        if m is None:
            if eof:
                return
            del buf[: max(pos, len(buf) - _START_OVERLAP)]  # keep a tail that may hold a split start tag
            pos = 0
            read_more()
            continue
        # read the match before the buffer shrinks (a match on a bytearray reads the mutated bytes)
        tag, start, head = m.group(1).decode(), m.start(), m.end() - m.start()
        del buf[:start]
        end_tag = b"</" + tag.encode() + b">"
        end_from, next_from = 0, head
        oversized = False  # handed over cut; the rest of the record is being skipped
        while True:
            end = buf.find(end_tag, end_from)
            nxt = _find_start(buf, next_from, legacy)
            nxt_pos = nxt.start() if nxt is not None else None
            if end != -1 and (nxt_pos is None or end < nxt_pos):
                if not oversized:
                    yield tag, bytes(buf[: end + len(end_tag)])
                pos = end + len(end_tag)
                break
            if nxt_pos is not None:  # another record starts before this one ended: broken record
                if not oversized:
                    yield tag, None
                pos = nxt_pos
                break
            if eof:
                if not oversized:
                    yield tag, None
                return
            # neither is in the buffer: the next searches cover only what the next block adds (and the
            # few bytes before it, where a tag cut by the block boundary starts)
            end_from = max(end_from, len(buf) - len(end_tag) + 1)
            next_from = max(next_from, len(buf) - _START_OVERLAP)
            if not oversized and len(buf) > _MAX_RECORD:
                log.warning(
                    "a <%s> record is over %d bytes: handed over cut, the rest skipped", tag, _MAX_RECORD
                )
                yield tag, bytes(buf[:_MAX_RECORD])
                oversized = True
            if oversized:
                keep_from = min(end_from, next_from)
                del buf[:keep_from]
                end_from -= keep_from
                next_from -= keep_from
            read_more()


_START_OVERLAP = 64  # longer than any _START match
_MAX_RECORD = 32 << 20  # bytes of one record kept for re-parsing; PubMed's largest are a few MB


def _find_start(buf, start: int, legacy: bool) -> re.Match | None:
    """The first record start tag in ``buf`` from ``start`` (nested ``MedlineCitation`` skipped)."""
    m = _START.search(buf, start)
    while m and not legacy and m.group(1) == b"MedlineCitation":
        m = _START.search(buf, m.end())
    return m
