"""A stub OpenAI-compatible model server on loopback, for running the real OpenClaw offline.

Run as ``python -m tests.support.model_stub --port-file FILE --log FILE [--delay S]``: it binds ``127.0.0.1`` on a
free port, writes the port to ``FILE`` once it listens, and serves until SIGTERM:

* ``GET /v1/models`` — one model, ``fake-model``;
* ``POST /v1/chat/completions`` — a deterministic assistant reply that repeats the words of the
  last user message (so they can be searched for later), plain or streamed (server-sent events,
  ``stream: true``, with a final usage chunk), after ``--delay`` seconds (a turn that stays in
  flight for a while);
* ``POST /v1/responses`` — the same reply in the Responses API shape (plain or streamed);
* ``POST /v1/embeddings`` — deterministic unit vectors (a hashed bag of words, 64 dimensions), so
  equal words give similar vectors.

Each request's method, path and the request's ``stream`` flag go to the log, one JSON line each.
:func:`start` runs it as a subprocess and returns a handle; stop it with
:func:`tests.support.processes.stop_process` (TERM, then KILL).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL = "fake-model"
DIMS = 64
START_TIMEOUT = 20.0


_INTERNAL = re.compile(r"<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>.*?<<<END_OPENCLAW_INTERNAL_CONTEXT>>>", re.S)


def reply_text(messages: Any) -> str:
    """The assistant's answer: a fixed phrase plus the text of the last user message (OpenClaw's
    internal context blocks, which it sends as user messages too, left out)."""
    said = ""
    for m in messages if isinstance(messages, list) else []:
        if isinstance(m, dict) and m.get("role") == "user":
            text = " ".join(_INTERNAL.sub(" ", _text_of(m.get("content"))).split())
            said = text or said
    return f"Acknowledged. You said: {said[-400:]}" if said else "Acknowledged."


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for c in content:
            if isinstance(c, dict):
                parts.append(str(c.get("text") or c.get("input_text") or ""))
            elif isinstance(c, str):
                parts.append(c)
        return " ".join(parts)
    return ""


def embed(text: str) -> list[float]:
    vec = [0.0] * DIMS
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vec[h[0] % DIMS] += 1.0 if h[1] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    if norm == 1.0 and not any(vec):
        vec[0] = 1.0
    return [v / norm for v in vec]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib signature
        pass

    def _log(self, **extra: Any) -> None:
        line = json.dumps({"t": time.time(), "method": self.command, "path": self.path, **extra})
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(line + "\n")

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {}
        return doc if isinstance(doc, dict) else {}

    def do_GET(self) -> None:
        self._log()
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        req = self._body()
        stream = bool(req.get("stream"))
        self._log(stream=stream, model=req.get("model"))
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith(("/chat/completions", "/responses")):
            time.sleep(self.server.delay)  # the model "thinks": the turn stays in flight
            if path.endswith("/responses"):
                self._responses(req, stream)
            else:
                self._chat(req, stream)
        elif path.endswith("/embeddings"):
            inputs = req.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            data = [{"object": "embedding", "index": i, "embedding": embed(str(x))} for i, x in enumerate(items)]
            usage = {"prompt_tokens": len(items), "total_tokens": len(items)}
            self._json(200, {"object": "list", "data": data, "model": req.get("model") or MODEL, "usage": usage})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _chat(self, req: dict[str, Any], stream: bool) -> None:
        text = reply_text(req.get("messages"))
        cid, now, model = f"chatcmpl-{int(time.time() * 1e6)}", int(time.time()), req.get("model") or MODEL
        usage = {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())}
        if not stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            self._json(200, {"id": cid, "object": "chat.completion", "created": now, "model": model,
                             "choices": [choice], "usage": usage})  # fmt: skip
            return
        base = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
        events = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            *({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
              for w in _pieces(text)),
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": usage},
        ]  # fmt: skip
        self._sse([json.dumps(e) for e in events] + ["[DONE]"], named=False)

    def _responses(self, req: dict[str, Any], stream: bool) -> None:
        raw = req.get("input")
        messages = raw if isinstance(raw, list) else [{"role": "user", "content": str(raw or "")}]
        text = reply_text(messages)
        rid, mid = f"resp_{int(time.time() * 1e6)}", f"msg_{int(time.time() * 1e6)}"
        item = {"id": mid, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
        usage = {"input_tokens": 10, "output_tokens": len(text.split()), "total_tokens": 10 + len(text.split())}
        done = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": req.get("model") or MODEL, "output": [item], "usage": usage}  # fmt: skip
        if not stream:
            self._json(200, done)
            return
        events = [
            ("response.created", {"type": "response.created", "response": {**done, "status": "in_progress",
                                                                            "output": []}}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                            "item": {**item, "status": "in_progress", "content": []}}),
            *(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": mid,
                                              "output_index": 0, "content_index": 0, "delta": w})
              for w in _pieces(text)),
            ("response.output_text.done", {"type": "response.output_text.done", "item_id": mid,
                                           "output_index": 0, "content_index": 0, "text": text}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": done}),
        ]  # fmt: skip
        self._sse([f"event: {name}\ndata: {json.dumps(doc)}" for name, doc in events], named=True)

    def _sse(self, frames: list[str], *, named: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for frame in frames:
            self.wfile.write((frame if named else f"data: {frame}").encode() + b"\n\n")
            self.wfile.flush()
        self.close_connection = True


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    log_path: Path
    log_lock: threading.Lock
    delay: float


def serve(port_file: Path, log_path: Path, *, delay: float = 0.0) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.log_path, server.log_lock, server.delay = log_path, threading.Lock(), delay
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)  # appears whole, once the socket listens
    server.serve_forever()


@dataclass
class ModelStub:
    """A running stub: its base URL (``…/v1``), process and request log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(ln) for ln in self.log.read_text().splitlines() if ln.strip()]
        except OSError:
            return []


def start(workdir: Path, *, delay: float = 0.0) -> ModelStub:
    """Start the stub as a subprocess (``-m tests.support.model_stub``) and wait until it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file, log = workdir / "model-stub.port", workdir / "model-stub.log"
    port_file.unlink(missing_ok=True)
    repo_root = Path(__file__).resolve().parents[2]
    with open(workdir / "model-stub.stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.model_stub", "--port-file", str(port_file), "--log", str(log),
             "--delay", str(delay)],
            cwd=repo_root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"the model stub did not start: {(workdir / 'model-stub.stderr').read_text()}")
        time.sleep(0.02)
    return ModelStub(url=f"http://127.0.0.1:{int(port_file.read_text())}/v1", proc=proc, log=log)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each model reply")
    args = ap.parse_args()
    serve(args.port_file, args.log, delay=args.delay)


if __name__ == "__main__":
    main()
