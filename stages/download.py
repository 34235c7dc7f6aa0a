"""Stage `download`: fetch the four Fashion-MNIST files into data/raw/, verified by checksum.

Each file comes from the first source in params `download.sources` that yields bytes whose
decompressed SHA-256 matches params `download.sha256`. Local folders are copied; HTTP(S)
base URLs are fetched with retries and backoff. Nothing unverified ever reaches data/raw/,
and no source can make a file larger than Fashion-MNIST's own (see MAX_BYTES).
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

from fmnist import params, paths
from fmnist.atomic_outputs import atomic_path
from fmnist.params.download import DownloadParams
from fmnist.stage_runner import StageError, out_of_space, run_stage


class Params(params.Section):  # what this stage reads: dvc.yaml lists the same
    download: DownloadParams


CHUNK = 1 << 16
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}

# Each file's decompressed size: an IDX header plus 60,000 training or 10,000 test items (28x28 images, 1-byte
# labels). A gzip copy is never much larger than what it holds (stored blocks add 5 bytes per 64 KiB), so a
# source that sends or unpacks to more than this is cut off: a bad mirror cannot fill the disk.
IDX_BYTES = {
    paths.RAW_FILES["train_images"]: 16 + 60_000 * 28 * 28,
    paths.RAW_FILES["train_labels"]: 8 + 60_000,
    paths.RAW_FILES["test_images"]: 16 + 10_000 * 28 * 28,
    paths.RAW_FILES["test_labels"]: 8 + 10_000,
}
MAX_BYTES = {name: size + size // 100 + 4096 for name, size in IDX_BYTES.items()}


class SourceError(Exception):
    """This source cannot provide this file; the next source is tried."""


class TransientError(SourceError):
    """Worth retrying the same source (5xx, timeout, reset connection, short body)."""


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects stay on HTTP(S) (urllib would follow one to ftp://), and an HTTPS source stays on HTTPS."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme, target = urlsplit(req.full_url).scheme, urlsplit(newurl).scheme
        if target not in ("http", "https") or (scheme == "https" and target != "https"):
            raise SourceError(f"refused redirect from {scheme.upper()} to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_SafeRedirects)


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def decompressed_sha256(path: Path, max_bytes: int | None = None) -> str:
    digest = hashlib.sha256()
    size = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise SourceError(f"decompresses to more than the {max_bytes} bytes this file has")
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"not a readable gzip file ({error})") from None
    return digest.hexdigest()


def copy_local(folder: str, name: str, dest: Path, max_bytes: int) -> None:
    path = Path(folder).expanduser() / name
    try:
        if path.stat().st_size > max_bytes:
            raise SourceError(f"{path} has {path.stat().st_size} bytes, more than any copy of {name} ({max_bytes})")
        shutil.copyfile(path, dest)
    except FileNotFoundError:
        raise SourceError(f"{path} not found") from None
    except OSError as error:
        if out_of_space(error):
            raise
        raise SourceError(f"cannot read {path}: {error.strerror}") from None


def http_get(url: str, dest: Path, timeout_s: float, max_bytes: int) -> None:
    try:
        with _opener.open(url, timeout=timeout_s) as response, dest.open("wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            if expected is not None and expected > max_bytes:
                raise SourceError(f"announces {expected} bytes, more than any copy of this file ({max_bytes})")
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=Path(url).name, disable=None) as bar:
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise SourceError(f"sent more than the {max_bytes} bytes any copy of this file has; cut off")
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        kind = TransientError if error.code in TRANSIENT_HTTP else SourceError
        raise kind(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, SourceError):
            raise error.reason from None
        raise TransientError(f"cannot connect: {error.reason}") from None
    except (TimeoutError, ConnectionError, OSError) as error:
        if out_of_space(error):  # our disk, not the connection: retrying or another source cannot help
            raise
        raise TransientError(f"connection failed mid-transfer: {error}") from None
    if expected is not None and received != expected:
        raise TransientError(f"connection closed after {received} of {expected} bytes")


def http_get_with_retries(url: str, dest: Path, config: DownloadParams, max_bytes: int) -> None:
    retries = config.retries
    for attempt in range(retries + 1):
        try:
            return http_get(url, dest, config.timeout_s, max_bytes)
        except TransientError as error:
            if attempt == retries:
                raise SourceError(f"{error} (after {retries + 1} attempts)") from None
            wait = config.backoff_s * 2**attempt
            print(f"  retrying {url} in {wait:g}s: {error}")
            time.sleep(wait)


def fetch_file(name: str, sha256: str, config: DownloadParams, dest: Path) -> str:
    """Put a verified copy of `name` at `dest`; return the source it came from."""
    failures = []
    max_bytes = MAX_BYTES[name]
    for source in config.sources:
        try:
            with atomic_path(dest) as tmp:
                if is_url(source):
                    url = urljoin(source if source.endswith("/") else source + "/", name)
                    http_get_with_retries(url, tmp, config, max_bytes)
                else:
                    copy_local(source, name, tmp, max_bytes)
                actual = decompressed_sha256(tmp, IDX_BYTES[name])
                if actual != sha256:
                    raise SourceError(f"checksum mismatch: expected {sha256}, got {actual}")
            return source
        except OSError as error:
            if out_of_space(error):
                raise StageError(f"{dest}: no space left on device; previous files left as they were") from None
            raise
        except SourceError as error:
            # atomic_path has removed the temp file; an older dest stays as it was.
            print(f"warning: {name} from {source}: {error}")
            failures.append(f"{source}: {error}")
    raise StageError(f"{name}: no source worked; tried " + "; ".join(failures))


def fetch_all(config: DownloadParams, dest_dir: Path) -> dict[str, str]:
    return {name: fetch_file(name, config.sha256[name], config, dest_dir / name) for name in paths.RAW_FILES.values()}


def main() -> None:
    loaded = params.load(Params)
    started = time.perf_counter()
    for name, source in fetch_all(loaded.download, paths.RAW_DIR).items():
        print(f"{name}: verified, from {source}")
    params.check_unchanged("download")
    print(f"download: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main)
