"""An HTTP proxy on 127.0.0.1 in front of an S3 server (moto) that fails, stalls or cuts the requests a test picks.

The clients under test (dvc, through s3fs and botocore) talk to the proxy as their S3 endpoint; everything else
passes through unchanged. A rule matches requests by method, by path and by how many it has matched:

    proxy.add(Fault("status", method="PUT", times=2, status=503, code="SlowDown"))  # S3 throttling, twice
    proxy.add(Fault("stall", method="PUT", path="files"))  # every upload of a DVC object: half an answer, then silence
    proxy.access_key = "AKIAGOOD"  # other keys get S3's 403 InvalidAccessKeyId
"""

import http.client
import http.server
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    kind: str  # status: answer with an S3 error | stall: half the response, then silence | cut: half, then close
    method: str | None = None  # only requests with this method (None: any)
    times: int | None = None  # only this many matching requests, then pass them (None: every one)
    path: str = ""  # only requests whose path and query contain this (e.g. "files": DVC's objects and listings)
    status: int = 503
    code: str = "SlowDown"
    seen: int = 0


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT of the real server
    faults: list[Fault] = field(default_factory=list)
    access_key: str | None = None  # when set, requests signed with another key are refused as S3 does
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    stalled: threading.Event = field(default_factory=threading.Event)  # set when a stall begins
    release: threading.Event = field(default_factory=threading.Event)  # ends every stall
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        """No more faults; every stall so far ends (its client has long timed out)."""
        with self._lock:
            self.faults.clear()
        self.release.set()
        self.release, self.stalled = threading.Event(), threading.Event()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method not in (None, method) or fault.path not in path:
                    continue
                if fault.times is None or fault.seen < fault.times:
                    fault.seen += 1
                    return fault
        return None

    def count(self, outcome: str, method: str | None = None) -> int:
        return sum(1 for m, _, done in self.requests if done == outcome and method in (None, m))

    def serve(self) -> tuple[http.server.ThreadingHTTPServer, str]:
        proxy = self
        target = urlsplit(self.upstream)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                head = self.command == "HEAD"  # keeps the server's Content-Length: the object's size
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP | ({"connection"} if head else {"content-length"}):
                        self.send_header(name, value)
                if not head or not any(name.lower() == "content-length" for name, _ in headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:  # an answer to HEAD has headers only, even an error's
                    self.wfile.write(body)

            def _s3_error(self, status: int, code: str) -> None:
                body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code} (fault proxy)</Message></Error>"
                self._send(status, [("Content-Type", "application/xml")], body.encode())

            def _handle(self) -> None:
                method = self.command
                body = self._body()
                key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
                if proxy.access_key and (key is None or key.group(1) != proxy.access_key):
                    proxy.requests.append((method, self.path, "refused key"))
                    return self._s3_error(403, "InvalidAccessKeyId")
                fault = proxy._fault_for(method, self.path)
                if fault and fault.kind == "status":
                    proxy.requests.append((method, self.path, fault.code))
                    return self._s3_error(fault.status, fault.code)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                connection.request(method, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                if fault is None:
                    proxy.requests.append((method, self.path, "passed"))
                    return self._send(answer.status, answer.getheaders(), data)
                # stall or cut: promise the whole body, send half of it (at least a byte), then stop
                proxy.requests.append((method, self.path, fault.kind))
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(max(len(data), 2)))
                self.end_headers()
                self.wfile.write(data[: max(len(data) // 2, 1)])
                self.wfile.flush()
                if fault.kind == "stall":
                    release = proxy.release
                    proxy.stalled.set()
                    release.wait(120)
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, _request, _client_address):
                pass  # a client that timed out and hung up on a stall is what the test wanted

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
