"""Run the emulator: the ARM app (fleet/emulator/app.py) over HTTPS (fleet/emulator/tls.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn

from fleet.emulator.app import create_app
from fleet.emulator.tls import ensure_certificates, fast_event_loop


def serve(host: str, port: int, db_path: str | Path) -> None:
    """Run the emulator over HTTPS on `port` until interrupted."""
    files = ensure_certificates(db_path, host)
    app = create_app(db_path)
    configs = [
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(files.cert_file),
            ssl_keyfile=str(files.key_file),
        )
    ]

    servers = [uvicorn.Server(config) for config in configs]

    async def run_all() -> None:
        # A signal stops the server that caught it; then the others stop too.
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)

    with asyncio.Runner(loop_factory=fast_event_loop()) as runner:
        runner.run(run_all())
