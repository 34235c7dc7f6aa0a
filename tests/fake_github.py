"""A fake of the three GitHub REST endpoints the review uses, on 127.0.0.1: list, create and update comments."""

import http.server
import json
import re
import threading
from dataclasses import dataclass, field


@dataclass
class FakeGitHub:
    token: str = "test-token"
    repository: str = "owner/repo"
    comments: list[dict] = field(default_factory=list)  # {"id", "issue", "body"}
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    read_only: bool = False  # a fork's token: reading works, writing answers 403

    def serve(self) -> tuple[http.server.ThreadingHTTPServer, str]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                fake.requests.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._answer(401, {"message": "Bad credentials"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                prefix = f"/repos/{fake.repository}/issues"
                listing = re.fullmatch(rf"{prefix}/(\d+)/comments(?:\?(.*))?", self.path)
                single = re.fullmatch(rf"{prefix}/comments/(\d+)", self.path)
                if method != "GET" and fake.read_only:
                    return self._answer(403, {"message": "Resource not accessible by integration"})
                if listing and method == "GET":
                    query = dict(part.split("=") for part in (listing.group(2) or "").split("&") if part)
                    per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
                    mine = [c for c in fake.comments if c["issue"] == int(listing.group(1))]
                    return self._answer(200, mine[(page - 1) * per_page : page * per_page])
                if listing and method == "POST":
                    comment = {"id": 1000 + len(fake.comments), "issue": int(listing.group(1)), "body": body["body"]}
                    fake.comments.append(comment)
                    return self._answer(201, comment)
                if single and method == "PATCH":
                    for comment in fake.comments:
                        if comment["id"] == int(single.group(1)):
                            comment["body"] = body["body"]
                            return self._answer(200, comment)
                return self._answer(404, {"message": "Not Found"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}"
