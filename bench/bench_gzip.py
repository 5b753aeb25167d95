"""Gzip reader benchmark: linear time and flat memory on highly compressible input (issue 11, class 11).

    .venv/bin/python bench/bench_gzip.py [--mb 30] [--factor 5]

Measured in this one process (CPU time of this process, best of 3):

1. ``etl.pubmed.source`` reading (64 KiB reads) a gzip of ``--mb`` MB of spaces and of ``--factor``
   times as many (defaults 30 and 150 MB; the 150 MB one is the ~153 KB file of the issue, which took
   91 s and 323 MB before): the time ratio (linear: ~factor; it was ~factor^2) and the tracemalloc peak of
   each (flat: ratio ~1).  Baseline: a bare ``zlib.decompressobj`` loop over the same bytes (the
   practical limit), as ours/baseline.
2. A real NLM file (``pubmed20n1015.xml.gz``, 756 records): ours vs ``gzip.GzipFile`` reads.
3. The recovery path: ``parse_to_tables`` on the real update file with ``--mb`` / ``factor x --mb`` MB
   of spaces inside one abstract (lxml refuses the text node, the record splitter takes over): time
   ratio and tracemalloc peaks (Python objects only; a record over 32 MB is cut).

Exit 1 if a time ratio exceeds 1.6 x factor or the memory ratio exceeds 1.5.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.pubmed.parser import parse_to_tables
from etl.pubmed.source import _MAX_RECORD, open_source

MB = 1 << 20
NLM_SAMPLE = REPO / "data/pubmed/pmparser/tests/testthat/data/baseline/pubmed20n1015.xml.gz"
UPDATE_XML = REPO / "tests/data/pubmed/nlm/pubmed20n1016.xml"


def gzip_of_spaces(n_mb: int) -> bytes:
    enc = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MB
    return b"".join([enc.compress(block) for _ in range(n_mb)] + [enc.flush()])


def read_ours(raw: bytes) -> int:
    stream = open_source(raw)
    total = 0
    while data := stream.read(1 << 16):
        total += len(data)
    return total


def read_zlib(raw: bytes) -> int:
    """The practical limit: a bare streaming zlib loop with the same 64 KiB output bound."""
    dec = zlib.decompressobj(wbits=31)
    total = 0
    data = raw
    while data or not dec.eof:
        out = dec.decompress(data, 1 << 16)
        total += len(out)
        data = dec.unconsumed_tail
        if not out and not data:
            break
    return total


def read_gzipfile(raw: bytes) -> int:
    import io

    total = 0
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
        while data := fh.read(1 << 16):
            total += len(data)
    return total


def cpu_best(fn, *args, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn(*args)
        best = min(best, time.process_time() - t0)
    return best


def peak_memory(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def padded_update_file(n_mb: int) -> bytes:
    xml = UPDATE_XML.read_bytes()
    at = xml.index(b"</AbstractText>")
    return gzip.compress(xml[:at] + b" " * (n_mb * MB) + xml[at:], compresslevel=6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=30, help="MB of spaces of the 1x input (default 30)")
    ap.add_argument("--factor", type=int, default=5, help="size ratio of the large input (default 5)")
    args = ap.parse_args(argv)
    ok = True
    small, large = args.mb, args.mb * args.factor

    raw_small, raw_large = gzip_of_spaces(small), gzip_of_spaces(large)
    assert read_ours(raw_large) == large * MB
    t_small, t_large = cpu_best(read_ours, raw_small), cpu_best(read_ours, raw_large)
    z_large = cpu_best(read_zlib, raw_large)
    m_small, m_large = peak_memory(read_ours, raw_small), peak_memory(read_ours, raw_large)
    ratio, mem_ratio = t_large / t_small, m_large / m_small
    ok &= ratio <= 1.6 * args.factor and mem_ratio <= 1.5
    print(
        f"spaces: {small} MB ({len(raw_small):,} B gzip) {t_small:.3f} s, {large} MB ({len(raw_large):,} B) "
        f"{t_large:.3f} s: time ratio {ratio:.2f} (x{args.factor} size); bare zlib {z_large:.3f} s "
        f"(ours/zlib {t_large / z_large:.2f}); tracemalloc peak {m_small / MB:.2f} MB -> {m_large / MB:.2f} MB "
        f"(ratio {mem_ratio:.2f})"
    )

    real = NLM_SAMPLE.read_bytes()
    t_ours, t_gzip = cpu_best(read_ours, real), cpu_best(read_gzipfile, real)
    print(
        f"real NLM file {NLM_SAMPLE.name} ({len(real):,} B, {read_ours(real):,} B unpacked): ours {t_ours:.3f} s, "
        f"gzip.GzipFile {t_gzip:.3f} s (ours/GzipFile {t_ours / t_gzip:.2f})"
    )

    hostile_small, hostile_large = padded_update_file(small), padded_update_file(large)
    r_small = cpu_best(parse_to_tables, hostile_small, "h.xml.gz", repeats=1)
    r_large = cpu_best(parse_to_tables, hostile_large, "h.xml.gz", repeats=1)
    tables = parse_to_tables(hostile_large, "h.xml.gz")
    r_ratio = r_large / r_small
    rm_small = peak_memory(parse_to_tables, hostile_small, "h.xml.gz")
    rm_large = peak_memory(parse_to_tables, hostile_large, "h.xml.gz")
    ok &= r_ratio <= 1.6 * args.factor and tables["articles"].num_rows == 9
    print(
        f"recovery (one abstract of {small} / {large} MB spaces): {r_small:.3f} s / {r_large:.3f} s, ratio "
        f"{r_ratio:.2f}; tracemalloc peak {rm_small / MB:.0f} MB / {rm_large / MB:.0f} MB (records over "
        f"{_MAX_RECORD // MB} MB are cut); kept {tables['articles'].num_rows} articles, "
        f"{tables['deletions'].num_rows} deletions, {tables['errors'].num_rows} error row"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
