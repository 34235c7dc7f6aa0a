"""Stage `download`: fetch the four Fashion-MNIST files into data/raw/, verified by checksum.

Each file comes from the first source in params `download.sources` that yields bytes whose
decompressed SHA-256 matches params `download.sha256`. Local folders are copied; HTTP(S)
base URLs are fetched with retries and backoff. Nothing unverified ever reaches data/raw/.
"""

import gzip
import hashlib
import shutil
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from stages import params, paths
from stages.errors import StageError, run_stage
from stages.files import atomic_path

CHUNK = 1 << 16
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class SourceError(Exception):
    """This source cannot provide this file; the next source is tried."""


class TransientError(SourceError):
    """Worth retrying the same source (5xx, timeout, reset connection, short body)."""


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise SourceError(f"refused redirect from HTTPS to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_NoDowngradeRedirects)


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def decompressed_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"not a readable gzip file ({error})") from None
    return digest.hexdigest()


def copy_local(folder: str, name: str, dest: Path) -> None:
    path = Path(folder).expanduser() / name
    try:
        shutil.copyfile(path, dest)
    except FileNotFoundError:
        raise SourceError(f"{path} not found") from None
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error.strerror}") from None


def http_get(url: str, dest: Path, timeout_s: float) -> None:
    try:
        with _opener.open(url, timeout=timeout_s) as response, dest.open("wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=Path(url).name, disable=None) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        kind = TransientError if error.code in TRANSIENT_HTTP else SourceError
        raise kind(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, SourceError):
            raise error.reason from None
        raise TransientError(f"cannot connect: {error.reason}") from None
    except (TimeoutError, ConnectionError, OSError) as error:
        raise TransientError(f"connection failed mid-transfer: {error}") from None
    if expected is not None and received != expected:
        raise TransientError(f"connection closed after {received} of {expected} bytes")


def http_get_with_retries(url: str, dest: Path, retries: int, timeout_s: float, backoff_s: float) -> None:
    for attempt in range(retries + 1):
        try:
            return http_get(url, dest, timeout_s)
        except TransientError as error:
            if attempt == retries:
                raise SourceError(f"{error} (after {retries + 1} attempts)") from None
            wait = backoff_s * 2**attempt
            print(f"  retrying {url} in {wait:g}s: {error}")
            time.sleep(wait)


def fetch_file(name: str, sha256: str, config: params.DownloadParams, dest: Path) -> str:
    """Put a verified copy of `name` at `dest`; return the source it came from."""
    failures = []
    for source in config.sources:
        try:
            with atomic_path(dest) as tmp:
                if is_url(source):
                    url = urljoin(source if source.endswith("/") else source + "/", name)
                    http_get_with_retries(url, tmp, config.retries, config.timeout_s, config.backoff_s)
                else:
                    copy_local(source, name, tmp)
                actual = decompressed_sha256(tmp)
                if actual != sha256:
                    raise SourceError(f"checksum mismatch: expected {sha256}, got {actual}")
            return source
        except SourceError as error:
            # atomic_path has removed the temp file; an older dest stays as it was.
            print(f"warning: {name} from {source}: {error}")
            failures.append(f"{source}: {error}")
    raise StageError(f"{name}: no source worked; tried " + "; ".join(failures))


def fetch_all(config: params.DownloadParams, dest_dir: Path) -> dict[str, str]:
    return {name: fetch_file(name, config.sha256[name], config, dest_dir / name) for name in paths.RAW_FILES.values()}


def main() -> None:
    config = params.load().download
    started = time.perf_counter()
    for name, source in fetch_all(config, paths.RAW_DIR).items():
        print(f"{name}: verified, from {source}")
    print(f"download: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main)
