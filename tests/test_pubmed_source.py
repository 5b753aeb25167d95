"""etl.pubmed.source: the tolerant gzip reader on hostile and unlucky input (issue 11, class 11)."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib
from pathlib import Path

import pytest

from etl.pubmed import source as source_module
from etl.pubmed.parser import parse_to_tables
from etl.pubmed.source import SafeGzipReader, open_source

NLM = Path(__file__).resolve().parent / "data" / "pubmed" / "nlm"
MB = 1 << 20


def _gzip_of_spaces(n_mb: int) -> bytes:
    """gzip of ``n_mb`` MB of spaces (~1000:1), built a megabyte at a time (the test's own memory stays
    small, so tracemalloc sees the reader's)."""
    enc = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MB
    return b"".join([enc.compress(block) for _ in range(n_mb)] + [enc.flush()])


def _drain(stream, size: int) -> tuple[int, int]:
    """(bytes read, largest single read) reading ``stream`` to its end ``size`` bytes at a time."""
    total = largest = 0
    while True:
        data = stream.read(size)
        if not data:
            return total, largest
        total += len(data)
        largest = max(largest, len(data))


@pytest.mark.parametrize("read_size", [1 << 16, 1 << 24])
def test_highly_compressible_gzip_is_read_in_bounded_memory(read_size):
    """20 MB of spaces in a 20 KB gzip: before issue 11 the reader decompressed each 64 KB input block
    whole (here: all 20 MB at once), held it, and re-copied the rest of it at every read (quadratic: 150 MB
    took 91 s and 323 MB).  Now it holds one bounded chunk: the peak stays under 1 MB and no read hands
    over more than one 64 KiB chunk, whatever the caller asks for."""
    raw = _gzip_of_spaces(20)
    assert len(raw) < 64 * 1024  # one input block expands to all of it
    tracemalloc.start()
    try:
        stream = open_source(raw)
        total, largest = _drain(stream, read_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 20 * MB and stream.fault is None
    assert peak < 1 * MB, f"peak {peak / MB:.1f} MB while reading 20 MB of spaces"
    assert largest <= 64 * 1024  # one chunk per read at most


@pytest.mark.parametrize("n_mb", [8, 20])
def test_records_around_megabytes_of_spaces_are_all_parsed(n_mb):
    """The real update file with megabytes of whitespace between its records, gzip-compressed: every
    record is kept and the gzip reader reports no fault.  Past 10 MB lxml refuses the text node
    ("Text node too long", its own resource limit): that is one xml error row, and the parser's
    record-by-record recovery still keeps every record."""
    xml = (NLM / "pubmed20n1016.xml").read_bytes()
    cut = xml.index(b"</PubmedArticle>") + len(b"</PubmedArticle>")
    raw = gzip.compress(xml[:cut] + b" " * (n_mb * MB) + xml[cut:], compresslevel=6)
    tables = parse_to_tables(raw, "padded.xml.gz")
    assert tables["articles"].num_rows == 10 and tables["deletions"].num_rows == 218
    errors = tables["errors"].to_pylist()
    assert all(e["stage"] == "xml" and "Text node too long" in e["reason"] for e in errors)
    assert len(errors) == (1 if n_mb > 10 else 0)


def test_truncated_highly_compressible_gzip_hands_over_a_prefix_then_reports_it():
    raw = _gzip_of_spaces(4)
    stream = open_source(raw[: len(raw) // 2])
    total, _ = _drain(stream, 1 << 16)
    assert 0 < total < 4 * MB
    assert "truncated" in stream.fault


class _Trickle(io.RawIOBase):
    """A file that hands over one byte per read (a slow pipe)."""

    def __init__(self, data: bytes):
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = bytes(self._data[self._pos : self._pos + 1])
        self._pos += len(chunk)
        return chunk


def test_output_zlib_still_holds_after_all_input_is_consumed_is_not_lost(monkeypatch):
    """One compressed byte of spaces decodes to kilobytes: with small output chunks zlib often has
    consumed all its input and still holds output.  The reader must ask for it before reading on or
    declaring the end (else bytes vanish, or a complete file is reported truncated)."""
    monkeypatch.setattr(source_module, "_OUT_CHUNK", 1000)
    payload = b"<x>" + b" " * 300_000 + b"</x>"
    reader = SafeGzipReader(_Trickle(gzip.compress(payload)))
    out = bytearray()
    while data := reader.read(4096):
        out += data
    assert bytes(out) == payload and reader.fault is None


def test_multi_member_gzip_with_zero_padding_reads_every_member():
    """Members are read one after the other, also across zero padding (as gzip(1) reads them); zero
    padding at the very end is no fault."""
    a, b = b"<first/>" * 50_000, b"<second/>" * 50_000
    members = gzip.compress(a) + b"\x00" * 100 + gzip.compress(b) + b"\x00" * 10
    stream = open_source(members)
    assert stream.read() == a + b and stream.fault is None
    buffered = io.BufferedReader(SafeGzipReader(io.BytesIO(members)))  # the readinto path
    assert buffered.read() == a + b


def test_garbage_after_a_member_keeps_every_decoded_byte_and_is_reported():
    """Before issue 11 the block holding the member's end was decompressed as one piece, and the error
    on the garbage after it dropped all of that block's output (the file's last records)."""
    payload = (NLM / "pubmed20n1016.xml").read_bytes()
    stream = open_source(gzip.compress(payload) + b"not gzip")
    assert stream.read() == payload
    assert stream.fault is not None and "corrupt" in stream.fault


# --- the record splitter used to resume after malformed XML -----------------------------------------------


class _MeteredStart:
    """Stands in for ``source._START`` and counts the bytes its searches may scan (the window from
    ``pos`` to the end of the buffer); raises once the budget is spent, so that a splitter rescanning
    its whole buffer at every block fails at once."""

    def __init__(self, pattern, budget: int):
        self._pattern = pattern
        self.budget = budget
        self.spent = 0

    def search(self, buf, pos=0):
        self.spent += len(buf) - pos
        if self.spent > self.budget:
            raise AssertionError(f"the record splitter scanned {self.spent:,} bytes: not linear")
        return self._pattern.search(buf, pos)


class _Blocks:
    """A decompressed stream: ``read`` hands over ``data`` in blocks of at most 64 KiB."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1 << 16) if size and size > 0 else 1 << 16)


def test_record_splitter_searches_each_byte_a_bounded_number_of_times(monkeypatch):
    """A 20 MB record (compressible spaces in its abstract) arriving in 64 KiB blocks.  Before issue 11
    the splitter searched its whole buffer for the next start tag again at every block: 320 blocks of a
    growing 20 MB buffer, 3 GB scanned (40 MB took 24 s).  Now each block is searched once."""
    big = b"<PubmedArticle><PMID>1</PMID><Abstract>" + b" " * (20 * MB) + b"</Abstract></PubmedArticle>"
    small = b"<PubmedArticle><PMID>2</PMID></PubmedArticle>"
    data = (
        b"<PubmedArticleSet>\n" + big + b"\n<MedlineCitation Owner='x'>\n" + small + b"\n</PubmedArticleSet>"
    )
    meter = _MeteredStart(source_module._START, budget=4 * len(data))
    monkeypatch.setattr(source_module, "_START", meter)
    records = list(source_module.split_records(_Blocks(data), legacy=False))
    assert records == [("PubmedArticle", big), ("PubmedArticle", small)]
    assert meter.spent >= len(data)  # it was metered


def test_oversized_record_is_handed_over_cut_and_skipped_in_bounded_memory(monkeypatch):
    """A record over the splitter's size limit (1 MB here, 32 MB in use) is handed over cut at the limit
    (its parse then fails and reports it with its PMID) and its rest is skipped without being kept: the
    peak stays near the limit, not near the record's 20 MB (before: the whole record was buffered and
    copied, 150 MB of spaces in one abstract cost 520 MB)."""
    monkeypatch.setattr(source_module, "_MAX_RECORD", MB, raising=False)
    big = b"<PubmedArticle><PMID>1</PMID><Abstract>" + b" " * (20 * MB) + b"</Abstract></PubmedArticle>"
    small = b"<PubmedArticle><PMID>2</PMID></PubmedArticle>"
    data = b"<PubmedArticleSet>" + big + small + b"</PubmedArticleSet>"
    stream = _Blocks(data)
    del big
    tracemalloc.start()
    try:
        records = [
            (tag, len(chunk) if chunk else chunk) for tag, chunk in source_module.split_records(stream, False)
        ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records == [("PubmedArticle", MB), ("PubmedArticle", len(small))]
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB splitting a 20 MB record"


def test_oversized_record_is_an_error_row_with_its_pmid(monkeypatch):
    monkeypatch.setattr(source_module, "_MAX_RECORD", MB, raising=False)
    xml = (NLM / "pubmed20n1016.xml").read_bytes()
    at = xml.index(b"</AbstractText>")
    tables = parse_to_tables(gzip.compress(xml[:at] + b" " * (12 * MB) + xml[at:]), "hostile.xml.gz")
    assert tables["articles"].num_rows == 9 and tables["deletions"].num_rows == 218
    (error,) = tables["errors"].to_pylist()
    all_pmids = set(parse_to_tables(xml, "plain.xml")["articles"].column("pmid").to_pylist())
    assert error["stage"] == "xml" and error["reason"].startswith("malformed <PubmedArticle> record")
    assert all_pmids - set(tables["articles"].column("pmid").to_pylist()) == {error["pmid"]}


def test_record_splitter_broken_and_unterminated_records_across_blocks():
    """A record cut by the next start tag, and one cut by the end of the data, with the tags split by
    block boundaries (1-byte blocks): the same answers as whole-buffer splitting."""
    one = b"<PubmedArticle><PMID>1</PMID></PubmedArticle>"
    data = b"<PubmedArticleSet>" + one + b"<PubmedArticle><PMID>2</PMID>" + one + b"<DeleteCitation><PMID>3"

    class OneByte(_Blocks):
        def read(self, size=-1):
            return self._data.read(1)

    expected = [
        ("PubmedArticle", one),
        ("PubmedArticle", None),
        ("PubmedArticle", one),
        ("DeleteCitation", None),
    ]
    assert list(source_module.split_records(_Blocks(data), legacy=False)) == expected
    assert list(source_module.split_records(OneByte(data), legacy=False)) == expected


def test_malformed_12_mb_record_is_an_error_row_and_the_others_are_kept():
    """A record whose abstract holds 12 MB of spaces is refused by lxml ("Text node too long"); the
    record-by-record recovery (which reads the gzip again and splits it) keeps the 9 other articles and
    the 218 deletions, and reports the big one with its PMID."""
    xml = (NLM / "pubmed20n1016.xml").read_bytes()
    at = xml.index(b"</AbstractText>")
    raw = gzip.compress(xml[:at] + b" " * (12 * MB) + xml[at:], compresslevel=6)
    tables = parse_to_tables(raw, "hostile.xml.gz")
    assert tables["articles"].num_rows == 9 and tables["deletions"].num_rows == 218
    (error,) = tables["errors"].to_pylist()
    all_pmids = set(parse_to_tables(xml, "plain.xml")["articles"].column("pmid").to_pylist())
    assert error["stage"] == "xml" and "Text node too long" in error["reason"]
    assert all_pmids - set(tables["articles"].column("pmid").to_pylist()) == {error["pmid"]}
