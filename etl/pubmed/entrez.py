"""Nightly E-utilities sweeps through Biopython's ``Bio.Entrez``: ESearch by date window, EFetch batches.

``sweep(config, since, until, datetype, out_dir)`` searches PubMed for records whose ``datetype``
(``edat`` new, ``mdat`` revised, ``pdat`` published) falls in ``[since, until]`` using the history server
(``usehistory=y``); a window holding >= ``window_cap`` ids (ESearch's 10,000 cap) is split in two,
recursively.  Each window is fetched with EFetch in ``batch_size`` batches from the history server,
and every batch's raw XML is landed on disk (temp file + atomic rename) *before* anything parses it.
``manifest.json`` in ``out_dir`` records windows and batches, so a rerun skips what is done and a
finished sweep can be replayed (:func:`landed_files`) without touching the network.

Bio.Entrez specifics (Biopython 1.88): the E-utilities URLs are hard-coded inside each function, and
the only thing it looks up at call time is the module attribute ``Bio.Entrez.urlopen`` (plus
``email``/``tool``/``api_key``/``max_tries``).  :func:`_entrez_session` therefore swaps in, for the
duration of a sweep, a ``urlopen`` that (1) rewrites the NCBI base URL to ``config.base_url`` (tests
point it at a local fake), (2) adds a socket timeout (Biopython sets none), and it sets
``max_tries=1`` so that retries/backoff are ours (Biopython would sleep 15 s between tries).
Rate limiting is ours too (evenly spaced, 3/s or 10/s with a key); Biopython's own spacing stays on.

The API key is never printed or logged: URLs in logs go through :func:`redact`, the key is kept out
of ``repr`` and never written to the manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from etl.pubmed.retry import RETRYABLE_STATUS, Backoff, MinIntervalLimiter

log = logging.getLogger(__name__)

NCBI_EUTILS = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DATETYPES = ("edat", "mdat", "pdat")
MANIFEST = "manifest.json"
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_API_KEY_RE = re.compile(r"(api_key=)[^&\s]*")
_session_lock = threading.Lock()  # Bio.Entrez settings are module globals: one sweep at a time


def redact(text: str) -> str:
    """Hide ``api_key=...`` values in a URL or message."""
    return _API_KEY_RE.sub(r"\1***", text)


@dataclass
class EntrezConfig:
    email: str | None = None  # NCBI requires a contact address; env NCBI_EMAIL if unset
    tool: str = "rexdrug"
    api_key: str | None = field(default=None, repr=False)  # env NCBI_API_KEY if unset; never logged
    base_url: str = NCBI_EUTILS  # override for tests / mirrors
    db: str = "pubmed"
    term: str = "all[sb]"  # every PubMed record; narrow it for partial sweeps
    batch_size: int = 500  # EFetch retmax per request
    window_cap: int = 10_000  # ESearch cannot page past this many ids: split such windows
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 60.0
    rate_per_s: float | None = None  # None: 3/s, or 10/s with an API key (NCBI's limits)

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"entrez.base_url must be http(s)://..., got {self.base_url!r}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"entrez.batch_size must be in 1..10000, got {self.batch_size}")
        if self.window_cap < 2:
            raise ValueError("entrez.window_cap must be >= 2")
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("entrez.max_retries must be >= 0 and entrez.timeout_s > 0")
        if self.rate_per_s is not None and not 0 < self.rate_per_s <= (10 if self.api_key else 3):
            raise ValueError(f"entrez.rate_per_s must be in (0, {10 if self.api_key else 3}] (NCBI's limit)")

    def resolved(self) -> EntrezConfig:
        """A copy with email/api_key filled from NCBI_EMAIL/NCBI_API_KEY; ``ValueError`` without an email."""
        email = self.email or os.environ.get("NCBI_EMAIL") or None
        api_key = self.api_key or os.environ.get("NCBI_API_KEY") or None
        if not email:
            raise ValueError("an email address is required by NCBI: set entrez.email or NCBI_EMAIL")
        copy = EntrezConfig(**{**self.__dict__, "email": email, "api_key": api_key})
        copy.validate()
        return copy

    @property
    def effective_rate(self) -> float:
        return self.rate_per_s or (10.0 if self.api_key else 3.0)


_DAY_FORMATS = ("%Y-%m-%d", "%Y/%m/%d")  # ISO, and E-utilities' own mindate/maxdate form


def parse_day(value: str | dt.date, what: str = "date") -> dt.date:
    """A window bound from config or CLI: a date, or text YYYY-MM-DD or YYYY/MM/DD; ``ValueError`` otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        for fmt in _DAY_FORMATS:
            try:
                return dt.datetime.strptime(value.strip(), fmt).date()
            except ValueError:
                continue
    raise ValueError(f"{what} must be a day as YYYY-MM-DD or YYYY/MM/DD, got {value!r}")


def default_until() -> dt.date:
    """Yesterday: today's records are still arriving, and a window is not fetched again once complete."""
    return dt.date.today() - dt.timedelta(days=1)


class EntrezError(RuntimeError):
    """E-utilities failed for good (after retries), or answered with an error document."""


@dataclass(frozen=True)
class Window:
    since: dt.date
    until: dt.date

    @property
    def key(self) -> str:
        return f"{self.since:%Y%m%d}-{self.until:%Y%m%d}"

    def split(self) -> tuple[Window, Window] | None:
        days = (self.until - self.since).days
        if days < 1:
            return None
        mid = self.since + dt.timedelta(days=days // 2)
        return Window(self.since, mid), Window(mid + dt.timedelta(days=1), self.until)


# --- public API ---------------------------------------------------------------------------------------


def sweep(
    config: EntrezConfig, since: dt.date | str, until: dt.date | str, datetype: str, out_dir: str | Path
) -> list[Path]:
    """Land every record whose ``datetype`` is in ``[since, until]`` as raw efetch XML under ``out_dir``.

    ``since``/``until``: dates, or text as :func:`parse_day` reads it.
    Returns all batch files of the sweep in order (including ones landed by an earlier, interrupted run).
    """
    since, until = parse_day(since, "since"), parse_day(until, "until")
    if datetype not in DATETYPES:
        raise ValueError(f"datetype must be one of {DATETYPES}, got {datetype!r}")
    if until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    config = config.resolved()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(out_dir, config, datetype)
    client = _EntrezClient(config)
    with _entrez_session(config):
        for window in _windows(client, Window(since, until), datetype, manifest):
            _fetch_window(client, window, datetype, manifest, out_dir)
    return landed_files(out_dir)


def landed_files(out_dir: str | Path) -> list[Path]:
    """Batch files recorded in ``out_dir``'s manifest, in window then batch order (for replay/ingest)."""
    out_dir = Path(out_dir)
    manifest = Manifest.load(out_dir, None, None)
    paths = []
    for key in sorted(manifest.windows):
        batches = manifest.windows[key]["batches"]
        for start in sorted(batches, key=int):
            paths.append(out_dir / batches[start]["file"])
    return paths


# --- manifest -----------------------------------------------------------------------------------------


class Manifest:
    """``manifest.json``: per window its count and landed batches; rewritten atomically after each batch."""

    def __init__(self, path: Path, data: dict):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, out_dir: Path, config: EntrezConfig | None, datetype: str | None) -> Manifest:
        path = out_dir / MANIFEST
        data = json.loads(path.read_text()) if path.exists() else {"windows": {}}
        if config is not None:
            previous = data.get("query")
            query = {"db": config.db, "term": config.term, "datetype": datetype}
            if previous and previous != query:
                raise ValueError(f"{out_dir} holds a sweep of {previous}; use another folder for {query}")
            data["query"] = query  # no credentials here, ever
        return cls(path, data)

    @property
    def windows(self) -> dict:
        return self.data["windows"]

    def window(self, window: Window) -> dict | None:
        return self.windows.get(window.key)

    def start_window(self, window: Window, count: int) -> dict:
        entry = self.windows.get(window.key)
        if entry is None or entry["count"] != count:
            if entry is not None:
                log.warning(
                    "window %s: count changed %s -> %s; fetching it again", window.key, entry["count"], count
                )
            entry = {
                "since": str(window.since),
                "until": str(window.until),
                "count": count,
                "batches": {},
                "complete": False,
            }
            self.windows[window.key] = entry
            self.save()
        return entry

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --- windows and batches ------------------------------------------------------------------------------


@dataclass
class SearchResult:
    count: int
    webenv: str | None
    query_key: str | None


def _windows(
    client: _EntrezClient, window: Window, datetype: str, manifest: Manifest
) -> Iterator[tuple[Window, SearchResult | None]]:
    """Windows small enough for ESearch, oldest first; done windows come back with no search."""
    entry = manifest.window(window)
    if entry is not None and entry.get("complete"):
        yield window, None
        return
    if entry is None and _has_done_subwindows(manifest, window):
        halves = window.split()
        if halves:
            for half in halves:
                yield from _windows(client, half, datetype, manifest)
            return
    result = client.esearch(window, datetype)
    if result.count >= client.config.window_cap:
        halves = window.split()
        if halves is not None:
            log.info(
                "window %s holds %d ids (cap %d): splitting",
                window.key,
                result.count,
                client.config.window_cap,
            )
            for half in halves:
                yield from _windows(client, half, datetype, manifest)
            return
        log.error(
            "window %s (one day) holds %d ids, over ESearch's cap %d: only the first %d can be fetched",
            window.key, result.count, client.config.window_cap, client.config.window_cap - 1,
        )  # fmt: skip
    yield window, result


def _has_done_subwindows(manifest: Manifest, window: Window) -> bool:
    """A previous run split this window (its halves are in the manifest): follow the same split."""
    for entry in manifest.windows.values():
        since, until = dt.date.fromisoformat(entry["since"]), dt.date.fromisoformat(entry["until"])
        if window.since <= since and until <= window.until and (since, until) != (window.since, window.until):
            return True
    return False


def _fetch_window(client: _EntrezClient, item, datetype: str, manifest: Manifest, out_dir: Path) -> None:
    window, result = item
    if result is None:
        log.info("window %s: already complete, skipped", window.key)
        return
    entry = manifest.start_window(window, result.count)
    total = (
        min(result.count, client.config.window_cap - 1)
        if result.count >= client.config.window_cap
        else result.count
    )
    folder = out_dir / datetype / window.key
    for start in range(0, total, client.config.batch_size):
        if str(start) in entry["batches"] and (out_dir / entry["batches"][str(start)]["file"]).exists():
            continue
        size = min(client.config.batch_size, total - start)
        xml, n_records = client.efetch_batch(result, start, size)
        name = folder / f"batch-{start:06d}.xml"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(name, xml)
        entry["batches"][str(start)] = {
            "file": str(name.relative_to(out_dir)), "records": n_records,
            "sha256": hashlib.sha256(xml).hexdigest(),
        }  # fmt: skip
        manifest.save()
        log.info("window %s: landed records %d-%d of %d", window.key, start, start + n_records - 1, total)
    entry["complete"] = True
    manifest.save()


# --- HTTP through Bio.Entrez --------------------------------------------------------------------------


class _EntrezClient:
    def __init__(self, config: EntrezConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.limiter = MinIntervalLimiter(config.effective_rate)
        self.backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self._sleep = sleep

    def esearch(self, window: Window, datetype: str) -> SearchResult:
        from Bio import Entrez

        def call() -> bytes:
            handle = Entrez.esearch(
                db=self.config.db, term=self.config.term, datetype=datetype, usehistory="y", retmax=0,
                mindate=f"{window.since:%Y/%m/%d}", maxdate=f"{window.until:%Y/%m/%d}",
            )  # fmt: skip
            return _read_all(handle)

        body = self._with_retries(f"esearch {window.key}", call, _check_esearch)
        return _parse_esearch(body)

    def efetch_batch(self, result: SearchResult, start: int, size: int) -> tuple[bytes, int]:
        from Bio import Entrez

        def call() -> bytes:
            handle = Entrez.efetch(
                db=self.config.db, WebEnv=result.webenv, query_key=result.query_key,
                retstart=start, retmax=size, retmode="xml",
            )  # fmt: skip
            return _read_all(handle)

        def check(body: bytes) -> None:
            _check_efetch(body, size)

        body = self._with_retries(f"efetch retstart={start}", call, check)
        return body, _count_records(body)

    def _with_retries(self, what: str, call: Callable[[], bytes], check: Callable[[bytes], None]) -> bytes:
        attempt = 0
        while True:
            self.limiter.wait()
            retry_after = None
            try:
                body = call()
                check(body)
                return body
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRYABLE_STATUS:
                    raise EntrezError(f"{what}: HTTP {exc.code} {exc.reason}") from None
                reason = f"HTTP {exc.code}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                reason = f"{type(exc).__name__}: {redact(str(exc))}"
            except _BadResponse as exc:
                reason = str(exc)
            attempt += 1
            if attempt > self.config.max_retries:
                raise EntrezError(f"{what}: giving up after {attempt} attempts: {reason}")
            delay = self.backoff.delay(attempt, retry_after)
            log.warning("%s: %s; retry %d/%d in %.2fs", what, reason, attempt, self.config.max_retries, delay)
            self._sleep(delay)


class _BadResponse(Exception):
    """A 200 answer that is not usable (truncated XML, wrong number of records): retried."""


def _read_all(handle) -> bytes:
    try:
        data = handle.read()
    finally:
        handle.close()
    return data.encode("utf-8") if isinstance(data, str) else data


def _check_esearch(body: bytes) -> None:
    root = _xml_root(body, "esearch")
    error = root.findtext("ERROR")
    if error:
        raise EntrezError(f"esearch error from NCBI: {error}")
    if root.tag != "eSearchResult" or root.findtext("Count") is None:
        raise _BadResponse(f"esearch answered <{root.tag}> without a Count")


def _parse_esearch(body: bytes) -> SearchResult:
    root = _xml_root(body, "esearch")
    return SearchResult(int(root.findtext("Count")), root.findtext("WebEnv"), root.findtext("QueryKey"))


def _check_efetch(body: bytes, expected: int) -> None:
    root = _xml_root(body, "efetch")
    error = root.findtext("ERROR")
    if error:
        raise _BadResponse(f"efetch error from NCBI: {error}")  # e.g. history not ready yet: retried
    if root.tag != "PubmedArticleSet":
        raise _BadResponse(f"efetch answered <{root.tag}>, not <PubmedArticleSet>")
    n = _count_records(body, root)
    if n != expected:
        raise _BadResponse(f"efetch returned {n} records, expected {expected}")


def _count_records(body: bytes, root=None) -> int:
    root = root if root is not None else _xml_root(body, "efetch")
    return sum(1 for el in root if el.tag in ("PubmedArticle", "PubmedBookArticle"))


def _xml_root(body: bytes, what: str):
    try:
        return etree.fromstring(body, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise _BadResponse(f"{what} response is not well-formed XML ({len(body)} bytes): {exc}") from None


@contextlib.contextmanager
def _entrez_session(config: EntrezConfig):
    """Point Bio.Entrez at ``config`` for the duration of a sweep, then restore its settings."""
    from Bio import Entrez

    base = config.base_url if config.base_url.endswith("/") else config.base_url + "/"
    timeout = config.timeout_s

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else str(request)
        if base != NCBI_EUTILS and url.startswith(NCBI_EUTILS):
            new_url = base + url[len(NCBI_EUTILS) :]
            if isinstance(request, urllib.request.Request):
                request.full_url = new_url
            else:
                request = new_url
        log.debug(
            "GET %s", redact(request.full_url if isinstance(request, urllib.request.Request) else request)
        )
        kwargs.setdefault("timeout", timeout)
        return urllib.request.urlopen(request, *args, **kwargs)

    with _session_lock:
        saved = {name: getattr(Entrez, name) for name in ("email", "tool", "api_key", "max_tries", "urlopen")}
        Entrez.email, Entrez.tool, Entrez.api_key = config.email, config.tool, config.api_key
        Entrez.max_tries = 1  # our retry loop does backoff; Biopython's would sleep 15 s
        Entrez.urlopen = urlopen
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(Entrez, name, value)
