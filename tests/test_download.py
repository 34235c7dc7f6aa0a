import gzip
import io
import re
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from tqdm import tqdm

from fmnist import paths
from fmnist.params.download import DownloadParams
from fmnist.stage_runner import StageError
from stages import download
from tests.conftest import QuietHandler

NAMES = list(paths.RAW_FILES.values())


def config(sources: list[str], checksums: dict[str, str], **overrides) -> DownloadParams:
    values = {"sources": sources, "sha256": checksums, "retries": 2, "timeout_s": 5, "backoff_s": 0}
    return DownloadParams(**(values | overrides))


def test_local_folder(tiny_dataset, tmp_path):
    folder, checksums = tiny_dataset
    used = download.fetch_all(config([str(folder)], checksums), tmp_path / "raw")
    assert set(used.values()) == {str(folder)}
    for name in NAMES:
        assert (tmp_path / "raw" / name).read_bytes() == (folder / name).read_bytes()


def test_recompressed_copy_passes_the_decompressed_checksum(tiny_dataset, tmp_path):
    folder, checksums = tiny_dataset
    name = NAMES[0]
    (folder / name).write_bytes(gzip.compress(gzip.decompress((folder / name).read_bytes()), compresslevel=1, mtime=1))
    download.fetch_file(name, checksums[name], config([str(folder)], checksums), tmp_path / name)


def test_http_source(tiny_dataset, serve, tmp_path):
    folder, checksums = tiny_dataset
    url = serve(folder)
    used = download.fetch_all(config([str(tmp_path / "empty"), url], checksums), tmp_path / "raw")
    assert set(used.values()) == {url}
    assert all((tmp_path / "raw" / name).exists() for name in NAMES)


def test_checksum_mismatch_falls_through_to_next_source(tiny_dataset, tmp_path, capsys):
    folder, checksums = tiny_dataset
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    name = NAMES[1]
    (corrupt / name).write_bytes(gzip.compress(b"\0\0\x08\x01" + bytes(8)))
    source = download.fetch_file(name, checksums[name], config([str(corrupt), str(folder)], checksums), tmp_path / name)
    assert source == str(folder)
    warning = capsys.readouterr().out
    assert f"{name} from {corrupt}: checksum mismatch: expected {checksums[name]}, got " in warning


def test_every_source_failing_is_one_error_naming_file_and_sources(tiny_dataset, tmp_path):
    _, checksums = tiny_dataset
    name = NAMES[0]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / name).write_bytes(b"not gzip at all")
    dest = tmp_path / "raw" / name
    dest.parent.mkdir()
    dest.write_bytes(b"previous good copy")
    with pytest.raises(StageError) as error:
        download.fetch_file(
            name, checksums[name], config([str(tmp_path / "bad"), str(tmp_path / "nowhere")], checksums), dest
        )
    message = str(error.value)
    assert message.startswith(f"{name}: no source worked")
    assert "not a readable gzip file" in message and "nowhere" in message
    assert dest.read_bytes() == b"previous good copy"
    assert [p.name for p in dest.parent.iterdir()] == [name]  # no temp files left


class FlakyHandler(QuietHandler):
    """Answers 503 to the first `failures` requests, then serves files."""

    failures = 2
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        if type(self).requests <= type(self).failures:
            self.send_error(503)
        else:
            super().do_GET()


def test_transient_http_errors_are_retried(tiny_dataset, serve, tmp_path):
    folder, checksums = tiny_dataset
    handler = type("Flaky", (FlakyHandler,), {"requests": 0})
    url = serve(folder, handler)
    name = NAMES[0]
    assert download.fetch_file(name, checksums[name], config([url], checksums), tmp_path / name) == url
    assert handler.requests == 3


def test_404_is_not_retried(tiny_dataset, serve, tmp_path):
    _, checksums = tiny_dataset
    (tmp_path / "empty").mkdir()
    handler = type("Counting", (FlakyHandler,), {"requests": 0, "failures": 0})
    url = serve(tmp_path / "empty", handler)
    name = NAMES[0]
    with pytest.raises(StageError, match="HTTP 404"):
        download.fetch_file(name, checksums[name], config([url], checksums), tmp_path / name)
    assert handler.requests == 1


def test_https_source_refuses_redirect_to_http():
    handler = download._SafeRedirects()

    class Request:
        full_url = "https://example.org/file.gz"

    with pytest.raises(download.SourceError, match=r"refused redirect from HTTPS to http://example\.org/file\.gz"):
        handler.redirect_request(Request(), None, 302, "Found", {}, "http://example.org/file.gz")


class RedirectsToFtp(QuietHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", f"ftp://127.0.0.1/{self.path.lstrip('/')}")
        self.end_headers()


def test_http_source_refuses_redirect_to_another_scheme(tiny_dataset, serve, tmp_path):
    folder, checksums = tiny_dataset
    url = serve(folder, RedirectsToFtp)
    name = NAMES[3]
    with pytest.raises(
        StageError, match=rf"{name}: no source worked; tried {url}: refused redirect from HTTP to ftp://"
    ):
        download.fetch_file(name, checksums[name], config([url], checksums), tmp_path / name)
    assert not (tmp_path / name).exists()


class EndlessBody(QuietHandler):
    """A bad mirror: bytes without end, with no Content-Length or with a huge one."""

    content_length: str | None = None
    sent = 0

    def do_GET(self):
        self.send_response(200)
        if self.content_length:
            self.send_header("Content-Length", self.content_length)
        self.end_headers()
        try:
            for _ in range(10_000):  # 640 MB at most, if nothing stopped it
                self.wfile.write(bytes(1 << 16))
                type(self).sent += 1 << 16
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.mark.parametrize(
    ("content_length", "message"),
    [
        (None, "sent more than the 14204 bytes any copy of this file has; cut off"),
        (str(10**12), "announces 1000000000000 bytes, more than any copy of this file (14204)"),
    ],
)
def test_a_source_sending_too_much_is_cut_off(tiny_dataset, serve, tmp_path, content_length, message):
    _, checksums = tiny_dataset
    handler = type("Endless", (EndlessBody,), {"content_length": content_length, "sent": 0})
    url = serve(tmp_path, handler)
    name = paths.RAW_FILES["test_labels"]  # 10,008 bytes decompressed: limit 10,008 + 1% + 4096
    assert download.MAX_BYTES[name] == 14204
    with pytest.raises(StageError, match=re.escape(message)):
        download.fetch_file(name, checksums[name], config([url], checksums, retries=0), tmp_path / name)
    assert not (tmp_path / name).exists()
    assert handler.sent < 10 << 20  # the client hung up; the server did not get to send 640 MB


class SendsExactly(QuietHandler):
    """A mirror that sends `size` bytes with no Content-Length, then closes."""

    size = 0

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(bytes(self.size))


@pytest.mark.parametrize("over", [0, 1])
def test_the_size_limit_is_the_files_own_to_the_byte(tiny_dataset, serve, tmp_path, over):
    """The limit itself gets through (and fails on its content); one byte more is cut off."""
    _, checksums = tiny_dataset
    name = paths.RAW_FILES["test_labels"]
    url = serve(tmp_path, type("Sends", (SendsExactly,), {"size": download.MAX_BYTES[name] + over}))
    with pytest.raises(StageError) as refused:
        download.fetch_file(name, checksums[name], config([url], checksums, retries=0), tmp_path / name)
    assert ("sent more than the 14204 bytes" in str(refused.value)) == bool(over)


@pytest.mark.parametrize("over", [0, 1])
def test_the_unpacked_size_limit_is_the_files_own_to_the_byte(tiny_dataset, tmp_path, over):
    _, checksums = tiny_dataset
    name = paths.RAW_FILES["test_labels"]
    (tmp_path / "unpacks").mkdir()
    (tmp_path / "unpacks" / name).write_bytes(gzip.compress(bytes(10_008 + over)))  # the file's own size: 10,008
    with pytest.raises(StageError) as refused:
        download.fetch_file(name, checksums[name], config([str(tmp_path / "unpacks")], checksums), tmp_path / name)
    assert ("decompresses to more than the 10008 bytes" in str(refused.value)) == bool(over)


def test_a_gzip_bomb_is_refused_without_unpacking_it_all(tiny_dataset, tmp_path):
    _, checksums = tiny_dataset
    name = paths.RAW_FILES["test_labels"]
    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb" / name).write_bytes(gzip.compress(bytes(10_000_000)))  # 10 KB that unpacks to 10 MB
    tracemalloc.start()
    try:
        with pytest.raises(StageError, match="decompresses to more than the 10008 bytes this file has"):
            download.fetch_file(name, checksums[name], config([str(tmp_path / "bomb")], checksums), tmp_path / name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes held at once: the bomb was unpacked whole"


def test_connection_refused_is_retried_then_reported(tiny_dataset, tmp_path):
    import socket

    _, checksums = tiny_dataset
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    name = NAMES[0]
    with pytest.raises(StageError, match=r"cannot connect: .*Connection refused.* \(after 3 attempts\)"):
        download.fetch_file(name, checksums[name], config([f"http://127.0.0.1:{port}/"], checksums), tmp_path / name)


class StallingHandler(QuietHandler):
    def do_GET(self):
        import time

        time.sleep(1.5)  # longer than the client's timeout; by then it has hung up
        self.close_connection = True


def test_a_stalling_server_times_out(tiny_dataset, serve, tmp_path):
    folder, checksums = tiny_dataset
    url = serve(folder, StallingHandler)
    name = NAMES[0]
    with pytest.raises(StageError, match=r"timed out.* \(after 2 attempts\)"):
        download.fetch_file(name, checksums[name], config([url], checksums, retries=1, timeout_s=0.3), tmp_path / name)


class ClosesMidBodyOnce(QuietHandler):
    """First request: announces the full length, sends half, hangs up. Later requests: served normally."""

    broken = 0

    def do_GET(self):
        if type(self).broken == 0:
            type(self).broken += 1
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


def test_a_body_cut_short_is_retried(tiny_dataset, serve, tmp_path, capsys):
    folder, checksums = tiny_dataset
    url = serve(folder, type("Cut", (ClosesMidBodyOnce,), {"broken": 0}))
    name = NAMES[0]
    assert download.fetch_file(name, checksums[name], config([url], checksums), tmp_path / name) == url
    assert "connection closed after" in capsys.readouterr().out
    assert download.decompressed_sha256(tmp_path / name) == checksums[name]


class AlwaysBusy(FlakyHandler):
    failures = 10**6


def test_each_source_gets_retries_plus_one_attempts_with_doubling_waits(tiny_dataset, serve, tmp_path, monkeypatch):
    _, checksums = tiny_dataset
    handler = type("Busy", (AlwaysBusy,), {"requests": 0})
    url = serve(tmp_path, handler)
    waits, this_thread, sleep = [], threading.current_thread(), time.sleep
    # time.sleep is one function for every thread: a params watcher an earlier test left polling must still sleep
    monkeypatch.setattr(
        time, "sleep", lambda s: waits.append(s) if threading.current_thread() is this_thread else sleep(s)
    )
    name = NAMES[0]
    with pytest.raises(StageError, match=re.escape("HTTP 503 Service Unavailable (after 4 attempts)")):
        download.fetch_file(name, checksums[name], config([url], checksums, retries=3, backoff_s=0.5), tmp_path / name)
    assert handler.requests == 4
    assert waits == [0.5, 1.0, 2.0]


def test_a_mirror_given_without_a_trailing_slash_is_still_a_folder(tiny_dataset, serve, tmp_path):
    folder, checksums = tiny_dataset
    (tmp_path / "site" / "mirror").mkdir(parents=True)
    for name in NAMES:
        (tmp_path / "site" / "mirror" / name).write_bytes((folder / name).read_bytes())
    url = serve(tmp_path / "site") + "mirror"  # http://127.0.0.1:PORT/mirror: its files, not the site's
    name = NAMES[0]
    assert download.fetch_file(name, checksums[name], config([url], checksums), tmp_path / name) == url


def test_a_failing_source_is_named_with_its_reason_each_in_turn(tiny_dataset, tmp_path):
    _, checksums = tiny_dataset
    name = NAMES[0]
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / name).write_bytes(bytes(download.MAX_BYTES[name] + 1))
    missing, big = tmp_path / "missing", tmp_path / "big"
    with pytest.raises(StageError) as error:
        download.fetch_file(name, checksums[name], config([str(missing), str(big)], checksums), tmp_path / name)
    assert str(error.value) == (
        f"{name}: no source worked; tried {missing}: {missing / name} not found; {big}: {big / name} has"
        f" {download.MAX_BYTES[name] + 1} bytes, more than any copy of {name} ({download.MAX_BYTES[name]})"
    )


def test_a_local_copy_of_exactly_the_limit_is_read(tmp_path):
    (tmp_path / "limit.gz").write_bytes(bytes(100))
    download.copy_local(str(tmp_path), "limit.gz", tmp_path / "copy", max_bytes=100)
    assert (tmp_path / "copy").read_bytes() == bytes(100)


def test_an_unreadable_local_copy_is_named_with_the_reason(tmp_path):
    (tmp_path / "folder.gz").mkdir()  # a folder where the file should be
    with pytest.raises(download.SourceError) as error:
        download.copy_local(str(tmp_path), "folder.gz", tmp_path / "copy", max_bytes=10**6)
    assert str(error.value) == f"cannot read {tmp_path / 'folder.gz'}: Is a directory"


def test_the_unpacked_limit_counts_every_chunk_not_only_the_last():
    """Chunks smaller than the limit, adding up to more than it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chunks.gz"
        path.write_bytes(gzip.compress(bytes(3 * download.CHUNK)))
        download.decompressed_sha256(path, 3 * download.CHUNK)  # exactly the limit
        with pytest.raises(download.SourceError, match=f"more than the {3 * download.CHUNK - 1} bytes"):
            download.decompressed_sha256(path, 3 * download.CHUNK - 1)


FULL_DISK = Path("/dev/full")  # Linux: every write to it fails with ENOSPC


@pytest.mark.skipif(not FULL_DISK.exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_not_taken_for_a_bad_source_or_connection(tiny_dataset, serve, tmp_path):
    """Retrying, or trying the next source, cannot help: the error is ours and stops the download at once."""
    import errno

    folder, checksums = tiny_dataset
    name = NAMES[0]
    handler = type("Counting", (FlakyHandler,), {"requests": 0, "failures": 0})
    url = serve(folder, handler)
    with pytest.raises(OSError) as error:
        download.http_get_with_retries(url + name, FULL_DISK, config([url], checksums), download.MAX_BYTES[name])
    assert error.value.errno == errno.ENOSPC and handler.requests == 1
    with pytest.raises(OSError) as error:
        download.copy_local(str(folder), name, FULL_DISK, download.MAX_BYTES[name])
    assert error.value.errno == errno.ENOSPC


def test_a_full_disk_stops_the_download_naming_the_file_and_leaves_the_old_one(tiny_dataset, tmp_path, monkeypatch):
    import errno

    folder, checksums = tiny_dataset
    name = NAMES[0]
    tried = []

    def full(source, *args):
        tried.append(source)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "copy_local", full)
    dest = tmp_path / name
    dest.write_bytes(b"previous good copy")
    with pytest.raises(StageError) as error:
        download.fetch_file(name, checksums[name], config([str(folder), str(folder)], checksums), dest)
    assert str(error.value) == f"{dest}: no space left on device; previous files left as they were"
    assert tried == [str(folder)] and dest.read_bytes() == b"previous good copy"


class PlainFiles(QuietHandler):
    """A strict mirror: 404 for a path with an empty segment (`//name`, as S3 and others treat it), and the file's
    bytes with a Content-Length only if `announce` (many servers stream without one)."""

    announce = True

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        if "//" in self.path or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        if self.announce:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("announce", [True, False])
@pytest.mark.parametrize("slash", ["/", ""])
def test_a_mirror_url_with_or_without_its_slash_and_length_gives_the_file(tiny_dataset, serve, tmp_path, announce,
                                                                          slash):  # fmt: skip
    folder, checksums = tiny_dataset
    url = serve(folder, type("Plain", (PlainFiles,), {"announce": announce})).rstrip("/") + slash
    name = NAMES[0]
    assert download.fetch_file(name, checksums[name], config([url], checksums, retries=0), tmp_path / name) == url


def test_a_file_announced_at_exactly_the_limit_is_fetched_then_checked(tiny_dataset, serve, tmp_path):
    _, checksums = tiny_dataset
    name = paths.RAW_FILES["test_labels"]
    (tmp_path / "exact").mkdir()
    (tmp_path / "exact" / name).write_bytes(bytes(download.MAX_BYTES[name]))  # announced and sent: the limit
    url = serve(tmp_path / "exact", PlainFiles)
    with pytest.raises(StageError) as refused:
        download.fetch_file(name, checksums[name], config([url], checksums, retries=0), tmp_path / name)
    assert "announces" not in str(refused.value) and "not a readable gzip file" in str(refused.value)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a person's shell is."""

    def isatty(self):
        return True


def test_a_terminal_sees_each_files_progress_in_bytes(tiny_dataset, serve, tmp_path, monkeypatch):
    folder, checksums = tiny_dataset
    name = NAMES[0]
    monkeypatch.setattr(sys, "stderr", Terminal())
    download.fetch_file(name, checksums[name], config([serve(folder)], checksums, retries=0), tmp_path / name)
    size = tqdm.format_sizeof((folder / name).stat().st_size)
    final = sys.stderr.getvalue().split("\r")[-1]
    assert final.startswith(f"{name}: 100%") and f"| {size}/{size} [" in final and final.rstrip().endswith("B/s]"), (
        final
    )


def test_a_log_gets_no_progress_bar(tiny_dataset, serve, tmp_path, capsys):
    """stderr that is a file or a pipe (CI, `dvc repro > log`) gets no bar: only what went wrong would show."""
    folder, checksums = tiny_dataset
    name = NAMES[0]
    download.fetch_file(name, checksums[name], config([serve(folder)], checksums, retries=0), tmp_path / name)
    assert capsys.readouterr().err == ""
