"""The simulator served by uvicorn in a background thread: for tests, and what ``fleetledger simulator`` uses."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fleetledger.testing.simulator.app import SimulatorApp, create_simulator_app

__all__ = ["KEEP_ALIVE_S", "RunningSimulator", "run_simulator_in_thread"]


#: Idle keep-alive connections are kept this long (providers keep them for about a minute; uvicorn's
#: default of 5 s would make clients' pooled connections go stale under bursty load).
KEEP_ALIVE_S = 75


@dataclass
class RunningSimulator:
    """A simulator served by uvicorn in a background thread (see :func:`run_simulator_in_thread`)."""

    url: str
    app: SimulatorApp
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.app.requests

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` (it includes ``/v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the SDK adds ``/v1``)."""
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_simulator_in_thread(host: str = "127.0.0.1", port: int = 0, **options: Any) -> RunningSimulator:
    """Serve a simulator with uvicorn in a daemon thread; returns once it accepts connections.

    ``port=0`` picks a free port (see ``.url``). ``options`` go to :func:`create_simulator_app`.
    """
    import uvicorn

    app = create_simulator_app(**options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fleetledger-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the simulator did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningSimulator(url=f"http://{host}:{bound}", app=app, _server=server, _thread=thread)
