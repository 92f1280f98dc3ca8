"""A TCP proxy on 127.0.0.1 that adds a latency to every HTTP request passing through it.

Used by bench/hub_cold_start.py and the cold-start tests to put SeaweedFS's S3 behind a latency
per request, as the Hub test server's ``latency_ms`` does. It knows nothing of HTTP: on each
connection, the first bytes the client sends after the server last answered (a new request on a
kept-alive connection) wait ``latency`` seconds before they are passed on; the rest of a request's
body and every answer pass at once. Bytes pass unchanged, so signed requests (S3 SigV4 signs the
Host header) still verify.

Counters: ``requests`` (requests delayed), ``bytes_down`` (server to client), ``max_busy`` (most
connections waiting on a request at once); :meth:`LatencyProxy.cpu_seconds`, the CPU its thread used.
"""

from __future__ import annotations

import asyncio
import threading


class LatencyProxy:
    """``LatencyProxy(target_host, target_port, latency).start()`` → ``port``; ``stop()`` ends it."""

    def __init__(self, host: str, port: int, latency: float) -> None:
        self.target = (host, port)
        self.latency = latency
        self.port = 0
        self.requests = 0
        self.bytes_down = 0
        self.busy = 0
        self.max_busy = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> int:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cpu_seconds(self) -> float:
        """CPU time of the proxy's thread so far (Linux; 0.0 elsewhere): it runs in the process that
        started it, whose own CPU time includes it."""
        from tests.support.processes import cpu_seconds

        return cpu_seconds(f"/proc/self/task/{self._thread.native_id}/stat")

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes_down": self.bytes_down, "max_busy": self.max_busy}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        state = {"answered": True, "waiting": False}

        async def client_to_server() -> None:
            while data := await reader.read(1 << 20):
                if state["answered"]:  # a new request
                    state["answered"] = False
                    self.requests += 1
                    state["waiting"] = True
                    self.busy += 1
                    self.max_busy = max(self.max_busy, self.busy)
                    await asyncio.sleep(self.latency)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.write_eof() if up_writer.can_write_eof() else None

        async def server_to_client() -> None:
            while data := await up_reader.read(1 << 20):
                if state["waiting"]:
                    state["waiting"] = False
                    self.busy -= 1
                state["answered"] = True
                self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except OSError:
            pass
        finally:
            if state["waiting"]:
                self.busy -= 1
            for w in (writer, up_writer):
                w.close()
