"""OpenAIChatGenerator against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sake_lens.errors import GenerationError
from sake_lens.prompts import EditRequest, OpenAIChatGenerator

DARRIEUX = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
GOOD_LINES = "\n".join(
    [
        "Danielle Darrieux grew up speaking",
        "The first language of Danielle Darrieux was",
        "As a child, Danielle Darrieux spoke",
        "Danielle Darrieux's native tongue is French",
        "Danielle Darrieux was raised speaking",
        "The language Danielle Darrieux learned first was",
    ]
)


def _completion(content: str) -> str:
    return json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    )


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        server.requests.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        status, payload, headers, delay = (
            server.replies.pop(0) if server.replies else (200, _completion(GOOD_LINES), {}, 0)  # type: ignore[attr-defined]
        )
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a timed-out client hung up
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.replies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _gen(server: ThreadingHTTPServer, tmp_path, **kw) -> OpenAIChatGenerator:
    host, port = server.server_address[:2]
    kw.setdefault("max_rounds", 1)
    return OpenAIChatGenerator(
        f"http://{host}:{port}/v1",
        api_key="test-key",
        model="fake-model",
        backoff=0.01,
        cache_dir=tmp_path,
        **kw,
    )


def test_normal_reply(server, tmp_path) -> None:
    ps = _gen(server, tmp_path).generate(DARRIEUX, 5, seed=1)
    assert ps.prompts[0] == DARRIEUX.text
    assert len(ps.prompts) == 5
    assert ps.drop_summary == {"names the old object": 1}
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer test-key"
    assert body["model"] == "fake-model" and body["seed"] == 1000
    assert "Danielle Darrieux" in body["messages"][0]["content"]


def test_cache_hit_makes_no_request(server, tmp_path) -> None:
    first = _gen(server, tmp_path).generate(DARRIEUX, 5, seed=2)
    assert len(server.requests) == 1
    second_gen = _gen(server, tmp_path)  # fresh instance: no in-memory cache
    second = second_gen.generate(DARRIEUX, 5, seed=2)
    assert second.prompts == first.prompts
    assert len(server.requests) == 1 and second_gen.requests_made == 0
    # the key is not stored in the cache
    assert not any("test-key" in p.read_text() for p in tmp_path.rglob("*.json"))


def test_500_then_success_is_retried(server, tmp_path) -> None:
    server.replies = [(500, '{"error": "boom"}', {}, 0), (429, "{}", {"Retry-After": "0"}, 0)]
    ps = _gen(server, tmp_path).generate(DARRIEUX, 5)
    assert len(ps.prompts) == 5
    assert len(server.requests) == 3


def test_malformed_reply_raises_a_clear_error_after_retries(server, tmp_path) -> None:
    server.replies = [(200, "this is not json", {}, 0)] * 3
    with pytest.raises(GenerationError, match="not JSON") as info:
        _gen(server, tmp_path, max_retries=2).generate(DARRIEUX, 5)
    assert "3 time(s)" in str(info.value)
    assert len(server.requests) == 3
    assert not list(tmp_path.rglob("*.json"))  # failures are not cached


def test_missing_fields_raise_after_retries(server, tmp_path) -> None:
    server.replies = [(200, '{"choices": []}', {}, 0)] * 2
    with pytest.raises(GenerationError, match="choices"):
        _gen(server, tmp_path, max_retries=1).generate(DARRIEUX, 5)


def test_garbage_content_is_dropped_with_reasons(server, tmp_path) -> None:
    server.replies = [(200, _completion("Sure! Here are some:\nWhat is it?\n..."), {}, 0)]
    ps = _gen(server, tmp_path).generate(DARRIEUX, 5)
    assert ps.prompts == [DARRIEUX.text]
    assert not ps.complete and ps.notes
    assert "subject missing" in ps.drop_summary


def test_client_errors_fail_at_once_with_a_fix(server, tmp_path) -> None:
    server.replies = [(401, '{"error": "bad key"}', {}, 0)]
    with pytest.raises(GenerationError, match="OPENAI_API_KEY"):
        _gen(server, tmp_path).generate(DARRIEUX, 5)
    assert len(server.requests) == 1


def test_timeouts_are_retried(server, tmp_path) -> None:
    server.replies = [(200, _completion(GOOD_LINES), {}, 0.6)]
    ps = _gen(server, tmp_path, timeout=0.2, max_retries=2).generate(DARRIEUX, 5)
    assert len(ps.prompts) == 5
    assert len(server.requests) >= 2


def test_base_url_and_key_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SAKE_LENS_OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    gen = OpenAIChatGenerator(cache_dir=tmp_path)
    assert gen.url == "http://127.0.0.1:9/v1/chat/completions"
    assert gen._api_key == "env-key"
    monkeypatch.delenv("SAKE_LENS_OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://example.invalid/v1")
    assert OpenAIChatGenerator(cache_dir=tmp_path).url.startswith("https://example.invalid")
    with pytest.raises(GenerationError, match="http"):
        OpenAIChatGenerator("ftp://x", cache_dir=tmp_path)


def test_unreachable_server_gives_generation_error(tmp_path) -> None:
    gen = OpenAIChatGenerator(
        "http://127.0.0.1:9/v1",
        model="m",
        max_retries=1,
        backoff=0.01,
        timeout=1,
        cache_dir=tmp_path,
    )
    with pytest.raises(GenerationError, match="failed 2 time"):
        gen.generate(DARRIEUX, 3)
