"""NLM PubMed baseline/update files: names, load order, listing and verified resumable downloads.

NLM publishes ``pubmedYYnNNNN.xml.gz`` files under ``<base>/baseline/`` (the yearly full set) and
``<base>/updatefiles/`` (daily updates, numbered after the baseline), each with a ``.md5`` sidecar
whose text reads ``MD5(pubmed25n0001.xml.gz)= <32 hex>``.  Whether a file is baseline or update is
decided by the listing it came from, not guessed from its number.

Load order (``file_order``): per release year, the baseline before the updates, each in file-number
order; a later year's baseline comes after an earlier year's updates (it replaces them).  So sorting
by ``file_order`` and then ``record_position`` replays NLM's semantics: a later record replaces an
earlier one, a DeleteCitation removes the PMID.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import httpx

from etl.pubmed.retry import RETRYABLE_STATUS, Backoff

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ftp.ncbi.nlm.nih.gov/pubmed/"
Kind = Literal["baseline", "update"]
KIND_FOLDERS: dict[str, str] = {"baseline": "baseline", "update": "updatefiles"}
NAME_RE = re.compile(r"^pubmed(\d{2})n(\d{4})\.xml(\.gz)?$")
_HREF_RE = re.compile(r'href="(?:[^"]*/)?(pubmed\d{2}n\d{4}\.xml\.gz)"')
_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


class NlmDownloadError(RuntimeError):
    """A file could not be downloaded and verified after all retries (or is not on the server)."""


@dataclass(frozen=True)
class NlmFile:
    name: str
    kind: Kind
    url: str

    @property
    def md5_url(self) -> str:
        return self.url + ".md5"

    @property
    def order(self) -> int:
        return file_order(self.name, self.kind)


def parse_name(name: str) -> tuple[int, int]:
    """``pubmed25n1275.xml.gz`` -> (25, 1275); ``ValueError`` for other names."""
    m = NAME_RE.match(Path(name).name)
    if not m:
        raise ValueError(f"{name!r} is not an NLM PubMed file name (pubmedYYnNNNN.xml[.gz])")
    return int(m.group(1)), int(m.group(2))


def file_order(name: str, kind: str) -> int:
    """Load-order key: ``YY * 10^6 + (0 baseline | 1 update) * 10^5 + NNNN`` (baseline < updates)."""
    if kind not in KIND_FOLDERS:
        raise ValueError(f"unknown NLM file kind {kind!r}; expected one of {sorted(KIND_FOLDERS)}")
    year, number = parse_name(name)
    return year * 1_000_000 + (0 if kind == "baseline" else 1) * 100_000 + number


def parse_listing(html: str) -> list[str]:
    """File names (``.xml.gz`` only, not ``.md5``) linked from an NLM directory listing, deduplicated."""
    return sorted(set(_HREF_RE.findall(html)), key=lambda n: parse_name(n))


def parse_md5(text: str) -> str:
    """``MD5(name)= hex`` (NLM) or ``hex  name`` (md5sum) -> lower-case hex digest."""
    m = _MD5_RE.search(text)
    if not m:
        raise ValueError(f"no MD5 digest in sidecar text {text[:80]!r}")
    return m.group(1).lower()


def md5_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


class NlmFileClient:
    """List and download NLM files over HTTP(S): resumable (Range on ``.part``), md5-verified, atomic.

    Retries with exponential backoff on 429/5xx, timeouts and dropped connections (a dropped transfer
    resumes where it stopped).  Progress goes to stderr (``progress=False`` to silence).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff: Backoff | None = None,
        progress: bool = True,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"NLM base URL must be http(s)://..., got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.progress = progress
        self._sleep = sleep
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
        self._owns_client = client is None
        self._listed: dict[str, NlmFile] = {}

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- listing --------------------------------------------------------------------------------------

    def folder_url(self, kind: str) -> str:
        if kind not in KIND_FOLDERS:
            raise ValueError(f"unknown NLM file kind {kind!r}; expected baseline or update")
        return f"{self.base_url}{KIND_FOLDERS[kind]}/"

    def list_files(self, kind: Kind) -> list[NlmFile]:
        """Files of ``kind`` on the server, in load order."""
        folder = self.folder_url(kind)
        html = self._get_text(folder)
        files = [NlmFile(name, kind, folder + name) for name in parse_listing(html)]
        for f in files:
            self._listed[f.name] = f
        log.info("%s: %d %s files", folder, len(files), kind)
        return files

    # --- download -------------------------------------------------------------------------------------

    def download(
        self, file: NlmFile | str, dest_dir: str | Path, skip: Iterable[str] = (), kind: Kind | None = None
    ) -> Path | None:
        """Download and verify one file into ``dest_dir``; ``None`` if its name is in ``skip``.

        A file already in ``dest_dir`` whose ``.md5`` sidecar matches is not fetched again.
        ``file`` is an :class:`NlmFile` from :meth:`list_files` or a bare name plus ``kind``.
        """
        nlm_file = self._resolve(file, kind)
        if nlm_file.name in set(skip):
            log.info("%s: already ingested, skipped", nlm_file.name)
            return None
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / nlm_file.name
        sidecar = dest_dir / (nlm_file.name + ".md5")
        if dest.exists() and sidecar.exists() and md5_of(dest) == parse_md5(sidecar.read_text()):
            log.info("%s: present and verified, not downloaded again", dest)
            return dest
        md5_text = self._get_text(nlm_file.md5_url)
        expected = parse_md5(md5_text)
        part = dest_dir / (nlm_file.name + ".part")
        attempt = 0
        while True:
            try:
                self._fetch_to_part(nlm_file, part)
                actual = md5_of(part)
                if actual == expected:
                    break
                part.unlink()
                raise _Retryable(f"md5 mismatch (got {actual}, expected {expected}); restarting")
            except _Retryable as exc:
                attempt += 1
                if attempt > self.max_retries:
                    raise NlmDownloadError(
                        f"{nlm_file.url}: giving up after {attempt} attempts: {exc}"
                    ) from None
                delay = self.backoff.delay(attempt, exc.retry_after)
                log.warning(
                    "%s: %s; retry %d/%d in %.2fs", nlm_file.name, exc, attempt, self.max_retries, delay
                )
                self._sleep(delay)
        _write_atomic(sidecar, md5_text.encode())
        os.replace(part, dest)  # atomic: a reader never sees a half file under the final name
        log.info("%s: downloaded and verified (md5 %s)", dest, expected)
        return dest

    def download_all(
        self, files: Iterable[NlmFile], dest_dir: str | Path, skip: Iterable[str] = ()
    ) -> list[Path]:
        skip = set(skip)
        done = []
        for f in files:
            path = self.download(f, dest_dir, skip=skip)
            if path is not None:
                done.append(path)
        return done

    def _resolve(self, file: NlmFile | str, kind: Kind | None) -> NlmFile:
        if isinstance(file, NlmFile):
            return file
        parse_name(file)  # validates the name
        if kind is not None:
            return NlmFile(file, kind, self.folder_url(kind) + file)
        if file in self._listed:
            return self._listed[file]
        raise ValueError(f"{file}: pass kind='baseline'|'update' or list the folder first (list_files)")

    def _fetch_to_part(self, nlm_file: NlmFile, part: Path) -> None:
        """Append the missing bytes of ``nlm_file`` to ``part`` (Range request when resuming)."""
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", nlm_file.url, headers=headers) as response:
                status = response.status_code
                if status == 416 and offset:  # nothing left to fetch: the part may be complete
                    return
                _raise_for_status(response, nlm_file.url)
                if status == 200 and offset:
                    log.info("%s: server ignored the Range request; restarting from byte 0", nlm_file.name)
                    offset = 0
                expected_len = _content_length(response)
                total = offset + expected_len if expected_len is not None else None
                received = 0
                with (
                    open(part, "ab" if offset else "wb") as out,
                    _progress(nlm_file.name, total, offset, self.progress) as bar,
                ):
                    for block in response.iter_bytes():  # as it arrives: a cut transfer keeps its bytes
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
                if expected_len is not None and received < expected_len:
                    raise _Retryable(f"body truncated ({received}/{expected_len} bytes); resuming")
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout: {exc}") from None
        except httpx.TransportError as exc:  # dropped connection, truncated body, refused...
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None

    def _get_text(self, url: str) -> str:
        attempt = 0
        while True:
            try:
                response = self._client.get(url)
                _raise_for_status(response, url)
                return response.text
            except httpx.TimeoutException as exc:
                error = _Retryable(f"timeout: {exc}")
            except httpx.TransportError as exc:
                error = _Retryable(f"{type(exc).__name__}: {exc}")
            except _Retryable as exc:
                error = exc
            attempt += 1
            if attempt > self.max_retries:
                raise NlmDownloadError(f"{url}: giving up after {attempt} attempts: {error}")
            delay = self.backoff.delay(attempt, error.retry_after)
            log.warning("%s: %s; retry %d/%d in %.2fs", url, error, attempt, self.max_retries, delay)
            self._sleep(delay)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in RETRYABLE_STATUS:
        raise _Retryable(f"HTTP {status}", response.headers.get("Retry-After"))
    raise NlmDownloadError(f"{url}: HTTP {status}")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or response.headers.get("Content-Encoding"):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _progress(name: str, total: int | None, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, leave=False,
    )  # fmt: skip
