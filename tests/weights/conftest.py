"""A fake remote for the weight fetcher: one local HTTP server standing in for the Hugging Face Hub and
for release hosts, serving only what a test puts in its routes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeRemote:
    """``routes``: path -> what the server answers; anything else is a 404 (a missing Hub repo)."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def serve_file(self, path: str, body: bytes) -> str:
        self.routes[path] = Route(200, body)
        return self.url(path)

    def serve_hub_file(self, repo_id: str, filename: str, body: bytes) -> None:
        """What huggingface.co answers for ``/<repo>/resolve/main/<file>`` (HEAD and GET)."""
        etag = hashlib.sha256(body).hexdigest()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'}
        self.routes[f"/{repo_id}/resolve/main/{filename}"] = Route(200, body, headers)

    def fail_everything(self, status: int = 500) -> None:
        self.routes.clear()
        self.default = Route(status, b"server error")

    default: Route = field(default_factory=lambda: Route(404, b"not found", {"X-Error-Code": "RepoNotFound"}))


def _handler(remote: FakeRemote) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            remote.requests.append((self.command, self.path))
            route = remote.routes.get(self.path, remote.default)
            self.send_response(route.status)
            for key, value in route.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if with_body:
                self.wfile.write(route.body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_remote(hub_cache, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRemote]:
    """Online mode, with the Hub endpoint pointing at a local server; caches are the test's own."""
    import huggingface_hub.constants as constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    remote = FakeRemote(base=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(remote)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", remote.base)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", remote.base + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setenv("ATTNZOO_DOWNLOAD_TIMEOUT", "5")
    try:
        yield remote
    finally:
        server.shutdown()
        server.server_close()
