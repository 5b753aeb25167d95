"""A local fake of NCBI for tests: NLM file downloads and the E-utilities esearch/efetch protocol.

stdlib ``http.server`` on 127.0.0.1 with an ephemeral port, threaded, started/stopped by a fixture.
It speaks from recorded real material: NLM files are real samples (served with ``.md5`` sidecars in
NLM's ``MD5(name)= hex`` format, HTML listings like NLM's, HTTP Range support); esearch responses use the
prolog of a recorded NCBI esearch response and its element layout; efetch responses are real
``PubmedArticle`` records wrapped in the recorded efetch envelope; an invalid ``db`` gets NCBI's
recorded ``<ERROR>`` response.

Faults are injected per endpoint, in order, one per request: ``429`` / ``500`` / ``503`` (status with
a short body), ``"slow"`` (sleeps ``slow_s`` before answering), ``"truncate"`` (announces the full
Content-Length, sends half the body, closes the connection).
Endpoints: ``listing``, ``file``, ``md5``, ``esearch``, ``efetch``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ESEARCH_PROLOG = (
    b'<?xml version="1.0" encoding="UTF-8" ?>\n'
    b'<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)  # verbatim from the recorded biopython Tests/Entrez/esearch2.xml
EFETCH_PROLOG = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)  # verbatim from recorded 2025 efetch responses (metapub / pubmed-client fixtures)
FOLDERS = {"baseline": "baseline", "updatefiles": "update"}


@dataclass
class FakeArticle:
    pmid: str
    edat: dt.date
    mdat: dt.date
    xml: bytes  # one real <PubmedArticle>...</PubmedArticle>


@dataclass
class FakeNcbiState:
    nlm_files: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"baseline": {}, "update": {}})
    articles: list[FakeArticle] = field(default_factory=list)
    recorded_error: bytes = b""  # served for esearch with an unknown db
    faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    requests: list[tuple[float, str, dict]] = field(default_factory=list)
    histories: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    slow_s: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeNcbi:
    """Owns the server thread.  ``nlm_base_url`` and ``eutils_base_url`` point clients at it."""

    def __init__(self, state: FakeNcbiState | None = None):
        self.state = state or FakeNcbiState()
        handler = type("BoundHandler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-ncbi", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def nlm_base_url(self) -> str:
        return self.url + "/pubmed/"

    @property
    def eutils_base_url(self) -> str:
        return self.url + "/entrez/eutils/"

    def start(self) -> FakeNcbi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- test controls ----------------------------------------------------------------------------------

    def add_nlm_file(self, kind: str, name: str, data: bytes) -> None:
        self.state.nlm_files[kind][name] = data

    def inject(self, endpoint: str, *faults) -> None:
        with self.state.lock:
            self.state.faults[endpoint].extend(faults)

    def requests_to(self, endpoint_path_suffix: str) -> list[tuple[float, str, dict]]:
        return [r for r in self.state.requests if r[1].endswith(endpoint_path_suffix)]


class _Handler(BaseHTTPRequestHandler):
    state: FakeNcbiState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    # --- routing ----------------------------------------------------------------------------------------

    def do_GET(self):
        parts = urlsplit(self.path)
        self._dispatch(parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self._dispatch(urlsplit(self.path).path, {k: v[-1] for k, v in parse_qs(body).items()})

    def _dispatch(self, path: str, params: dict):
        logged = dict(params)
        if self.headers.get("Range"):
            logged["_range"] = self.headers["Range"]  # recorded so tests can check resumption
        with self.state.lock:
            self.state.requests.append((time.monotonic(), path, logged))
        if path.startswith("/entrez/eutils/esearch.fcgi"):
            return self._with_faults("esearch", lambda: self._esearch(params))
        if path.startswith("/entrez/eutils/efetch.fcgi"):
            return self._with_faults("efetch", lambda: self._efetch(params))
        if path.startswith("/pubmed/"):
            rest = path[len("/pubmed/") :].split("/")
            if len(rest) == 2 and rest[0] in FOLDERS:
                kind, name = FOLDERS[rest[0]], rest[1]
                if name == "":
                    return self._with_faults("listing", lambda: self._listing(kind))
                if name.endswith(".md5"):
                    return self._with_faults("md5", lambda: self._md5(kind, name[:-4]))
                return self._with_faults("file", lambda: self._file(kind, name))
        self._send(404, b"not found", "text/plain")

    def _with_faults(self, endpoint: str, respond):
        with self.state.lock:
            fault = self.state.faults[endpoint].popleft() if self.state.faults[endpoint] else None
        if fault == "slow":
            time.sleep(self.state.slow_s)
        elif isinstance(fault, int):
            return self._send(fault, f"fault {fault}".encode(), "text/plain", {"Retry-After": "0"})
        status, body, ctype, headers = respond()
        if fault == "truncate" and status < 400:
            return self._send_truncated(status, body, ctype, headers)
        return self._send(status, body, ctype, headers)

    # --- NLM ----------------------------------------------------------------------------------------------

    def _listing(self, kind):
        names = sorted(self.state.nlm_files[kind])
        links = "".join(f'<a href="{n}">{n}</a>\n<a href="{n}.md5">{n}.md5</a>\n' for n in names)
        html = f"<html><head><title>Index</title></head><body><pre>{links}</pre></body></html>"
        return 200, html.encode(), "text/html", {}

    def _md5(self, kind, name):
        data = self.state.nlm_files[kind].get(name)
        if data is None:
            return 404, b"not found", "text/plain", {}
        return 200, f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode(), "text/plain", {}

    def _file(self, kind, name):
        data = self.state.nlm_files[kind].get(name)
        if data is None:
            return 404, b"not found", "text/plain", {}
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            if start >= len(data):
                return 416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"}
            headers = {
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                "Accept-Ranges": "bytes",
            }
            return 206, data[start:], "application/x-gzip", headers
        return 200, data, "application/x-gzip", {"Accept-Ranges": "bytes"}

    # --- E-utilities ----------------------------------------------------------------------------------------

    def _esearch(self, params):
        if params.get("db") != "pubmed":
            return 200, self.state.recorded_error, "text/xml", {}
        datetype = params.get("datetype", "edat")
        lo = _parse_date(params.get("mindate"))
        hi = _parse_date(params.get("maxdate"))
        ids = [
            a.pmid for a in self.state.articles
            if (lo is None or getattr(a, datetype) >= lo) and (hi is None or getattr(a, datetype) <= hi)
        ]  # fmt: skip
        retmax = int(params.get("retmax", 20))
        body = [ESEARCH_PROLOG, b"<eSearchResult>", f"<Count>{len(ids)}</Count>".encode()]
        body.append(f"<RetMax>{min(retmax, len(ids))}</RetMax><RetStart>0</RetStart>".encode())
        if params.get("usehistory") == "y":
            webenv = "MCID_" + uuid.uuid4().hex[:24]
            with self.state.lock:
                self.state.histories[(webenv, "1")] = ids
            body.append(f"<QueryKey>1</QueryKey><WebEnv>{webenv}</WebEnv>".encode())
        body.append(b"<IdList>" + b"".join(f"<Id>{i}</Id>".encode() for i in ids[:retmax]) + b"</IdList>")
        body.append(b"<TranslationSet/><QueryTranslation>all[sb]</QueryTranslation></eSearchResult>\n")
        return 200, b"".join(body), "text/xml; charset=UTF-8", {}

    def _efetch(self, params):
        ids = self.state.histories.get((params.get("WebEnv", ""), params.get("query_key", "")))
        if ids is None:
            err = b'<?xml version="1.0" ?>\n<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>'
            return 200, err, "text/xml", {}
        start = int(params.get("retstart", 0))
        count = int(params.get("retmax", 20))
        by_pmid = {a.pmid: a for a in self.state.articles}
        records = b"\n".join(by_pmid[p].xml for p in ids[start : start + count])
        body = EFETCH_PROLOG + b"<PubmedArticleSet>\n" + records + b"\n</PubmedArticleSet>\n"
        return 200, body, "text/xml; charset=UTF-8", {}

    # --- sending --------------------------------------------------------------------------------------------

    def _send(self, status, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_truncated(self, status, body: bytes, ctype: str, headers: dict):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


def _parse_date(text: str | None) -> dt.date | None:
    if not text:
        return None
    parts = [int(p) for p in text.replace("-", "/").split("/")]
    while len(parts) < 3:
        parts.append(1)
    return dt.date(*parts)


def articles_from_efetch_file(path: Path, start: dt.date, per_day: int = 2) -> list[FakeArticle]:
    """Real ``PubmedArticle`` records of ``path`` as the fake's database, ``per_day`` records per edat day."""
    import gzip

    from lxml import etree

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    articles = []
    for i, el in enumerate(root.iterfind("PubmedArticle")):
        pmid = el.findtext("MedlineCitation/PMID").strip()
        day = start + dt.timedelta(days=i // per_day)
        articles.append(FakeArticle(pmid, day, day + dt.timedelta(days=30), etree.tostring(el)))
    return articles
