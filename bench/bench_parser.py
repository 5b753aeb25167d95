"""Benchmark the PubMed parser against the practical limit and against Bio.Entrez.read.

    .venv/bin/python bench/bench_parser.py [--articles 20000] [--big 100000] [--no-memory]

Builds, in a temp folder, a PubmedArticleSet of ``--articles`` records by replicating the real
records of the 2020 baseline sample (``data/pubmed/pmparser/.../pubmed20n1015.xml.gz``, 756 records)
under new PMIDs, then measures in this one process, on the same plain-XML file:

* ours: ``etl.pubmed.parser.iter_records`` (every field, as the ingest uses it) and ``parse_to_tables``;
* (a) a bare lxml ``iterparse`` that only counts ``PubmedArticle`` elements (clearing them as it goes):
  the practical limit of any lxml-based parser;
* (b) ``Bio.Entrez.read`` on the same file (validating, with Biopython's bundled DTDs, offline);
* (c) pubmed_parser 0.5.1 ``parse_medline_xml`` if it is importable (skipped otherwise); it only
  reads gzip, so it is compared with ours on a ``.xml.gz`` copy of the same records.

Peak memory: the parser runs in a fresh subprocess over gzip files of ``--articles`` and ``--big``
records; the child samples its resident memory (``/proc/self/statm``) every 250 records and reports
the peak and the value after imports; the ratios (total and parsing part) for big vs small are printed.  Targets: >= 0.5x bare iterparse,
>= 3x Entrez.read, memory ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "data/pubmed/pmparser/tests/testthat/data/baseline/pubmed20n1015.xml.gz"
_RECORD = re.compile(rb"<PubmedArticle>.*?</PubmedArticle>", re.DOTALL)
_PMID = re.compile(rb'<PMID Version="(\d+)">\d+</PMID>')


def build_file(path: Path, n_articles: int, compress: bool = False) -> int:
    """Write ``n_articles`` real records (replicated, renumbered from PMID 50,000,001) to ``path``."""
    raw = gzip.decompress(SAMPLE.read_bytes())
    header = raw[: raw.index(b"<PubmedArticleSet>") + len(b"<PubmedArticleSet>")]
    # Bio.Entrez refuses DTD URLs that are not https (it then uses its bundled pubmed_190101.dtd)
    header = header.replace(b'"http://dtd.nlm.nih.gov/', b'"https://dtd.nlm.nih.gov/')
    records = _RECORD.findall(raw)
    with gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb") as out:
        out.write(header + b"\n")
        for i in range(n_articles):
            record = records[i % len(records)]
            new_pmid = 50_000_001 + i
            # only the record's own PMID (the first one) changes; cited PMIDs stay as they are
            replacement = rb'<PMID Version="\1">' + str(new_pmid).encode() + b"</PMID>"
            out.write(_PMID.sub(replacement, record, count=1))
            out.write(b"\n")
        out.write(b"</PubmedArticleSet>\n")
    return path.stat().st_size


def time_it(fn, repeat: int = 1) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def ours_records(path: Path) -> int:
    from etl.pubmed.parser import iter_records

    return sum(1 for kind, _ in iter_records(path, path.name) if kind == "article")


def ours_tables(path: Path) -> int:
    from etl.pubmed.parser import parse_to_tables

    return parse_to_tables(path, path.name)["articles"].num_rows


def bare_iterparse(path: Path) -> int:
    from lxml import etree

    count = 0
    for _, el in etree.iterparse(
        str(path),
        events=("end",),
        tag="PubmedArticle",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
    ):
        count += 1
        el.clear()
        parent = el.getparent()
        while el.getprevious() is not None:
            del parent[0]
    return count


def entrez_read(path: Path) -> int:
    from Bio import Entrez

    with open(path, "rb") as handle:
        record = Entrez.read(handle)
    return len(record["PubmedArticle"])


def pubmed_parser_051(path: Path) -> int:
    import pubmed_parser as pp

    return sum(1 for _ in pp.parse_medline_xml(str(path)))  # a generator in 0.5.1


_CHILD = """
import os, sys
sys.path.insert(0, {repo!r})
from etl.pubmed.parser import iter_records
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
def rss_kib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page_kib
before = rss_kib()
peak = before
n = 0
for kind, _ in iter_records({path!r}, "x"):
    n += kind == "article"
    if n % 250 == 0:
        peak = max(peak, rss_kib())
peak = max(peak, rss_kib())
print(n, before, peak)
"""


def child_memory(path: Path) -> tuple[int, int, int]:
    """Run the parser in a fresh process; its resident memory (KiB) after imports and at its peak."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path))],
        capture_output=True,
        text=True,
        check=True,
    )
    n, before, peak = (int(x) for x in out.stdout.split())
    return n, before, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=20_000)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rexdrug-bench-") as tmp:
        tmp = Path(tmp)
        xml = tmp / "bench.xml"
        size = build_file(xml, args.articles)
        print(
            f"file: {args.articles} articles, {size / 1e6:.1f} MB plain XML (real records, new PMIDs)",
            file=sys.stderr,
        )

        warm = tmp / "warm.xml"  # imports and first-call costs stay out of the timings
        build_file(warm, 200)
        bare_iterparse(warm), ours_records(warm), ours_tables(warm), entrez_read(warm)
        rows = []
        t_bare, n_bare = time_it(lambda: bare_iterparse(xml), args.repeat)
        t_ours, n_ours = time_it(lambda: ours_records(xml), args.repeat)
        t_tab, n_tab = time_it(lambda: ours_tables(xml), args.repeat)
        if not n_bare == n_ours == n_tab == args.articles:
            raise SystemExit(f"article counts differ: bare {n_bare}, ours {n_ours}, tables {n_tab}")
        rows.append(("bare lxml iterparse (count only)", t_bare, n_bare))
        rows.append(("ours: iter_records (all fields)", t_ours, n_ours))
        rows.append(("ours: parse_to_tables (Arrow)", t_tab, n_tab))
        t_entrez, n_entrez = time_it(lambda: entrez_read(xml), 1)
        rows.append(("Bio.Entrez.read", t_entrez, n_entrez))
        gz = tmp / "bench.xml.gz"  # pubmed_parser 0.5.1 only reads gzip: compare on the same .gz
        build_file(gz, args.articles, compress=True)
        t_ours_gz, n_ours_gz = time_it(lambda: ours_records(gz), args.repeat)
        rows.append(("ours: iter_records on .xml.gz", t_ours_gz, n_ours_gz))
        try:
            import pubmed_parser  # noqa: F401

            t_pp, n_pp = time_it(lambda: pubmed_parser_051(gz), 1)
            rows.append(("pubmed_parser 0.5.1 on .xml.gz", t_pp, n_pp))
        except ImportError:
            t_pp = None
            print("pubmed_parser not importable: skipped", file=sys.stderr)
        gz.unlink()

        print(f"\n{'parser':42s} {'seconds':>8s} {'articles/s':>11s} {'time/ours':>10s}")
        for name, seconds, n in rows:
            print(f"{name:42s} {seconds:8.2f} {n / seconds:11.0f} {seconds / t_ours:10.2f}")
        print(f"\nours (iter_records) vs bare iterparse: {t_bare / t_ours:.2f}x the speed   (target >= 0.5x)")
        print(f"ours (parse_to_tables) vs bare iterparse: {t_bare / t_tab:.2f}x the speed")
        print(
            f"ours (iter_records) vs Bio.Entrez.read: {t_entrez / t_ours:.2f}x faster        (target >= 3x)"
        )
        print(f"ours (parse_to_tables) vs Bio.Entrez.read: {t_entrez / t_tab:.2f}x faster")
        if t_pp is not None:
            print(f"ours vs pubmed_parser 0.5.1 (both on .xml.gz): {t_pp / t_ours_gz:.2f}x faster")
        xml.unlink()

        if not args.no_memory:
            results = {}
            for n in (args.articles, args.big):
                gz = tmp / f"mem{n}.xml.gz"
                build_file(gz, n, compress=True)
                results[n] = child_memory(gz)
                gz.unlink()
            print(
                f"\n{'articles':>9s} {'RSS before (MiB)':>17s} {'peak RSS (MiB)':>15s} {'parse part (MiB)':>17s}"
            )
            for n, (count, before, peak) in results.items():
                print(f"{count:9d} {before / 1024:17.1f} {peak / 1024:15.1f} {(peak - before) / 1024:17.1f}")
            (_, b_small, p_small), (_, b_big, p_big) = results[args.articles], results[args.big]
            print(
                f"peak RSS {args.big} vs {args.articles}: {p_big / p_small:.2f}x total, "
                f"{max(p_big - b_big, 1) / max(p_small - b_small, 1):.2f}x parsing part   (target <= 1.5x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
