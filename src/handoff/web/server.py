"""Serve the app from a thread of the current process (the demo, the simulator, tests).

`handoff serve` runs uvicorn in the foreground; embedding it instead lets the hub share a clock
with the simulator, so that a quarter of history and hours of vendor retries pass in seconds.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from handoff.hub import Hub
from handoff.web.app import create_app, hooks_first


class ServerThread:
    """handoff on a loopback port, in a background thread; `stop()` shuts it down cleanly."""

    def __init__(
        self, hub: Hub, *, run_worker: bool = True, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.hub = hub
        self.app = create_app(hub, run_worker=run_worker)
        self.asgi = hooks_first(self.app, self.app.state.gateway)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(self.asgi, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self._sock]},
            name="handoff-http",
            daemon=True,
        )

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("handoff did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
