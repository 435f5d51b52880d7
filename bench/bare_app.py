"""The baseline for bench/ingest.py: a bare Starlette endpoint that only reads the body.

Served exactly as `handoff serve` serves handoff (src/handoff/cli.py): one process (or, with
`--workers N`, N uvicorn worker processes as `handoff serve --workers N` runs),
`uvicorn.run(app, host, port, log_level="warning", access_log=False, lifespan="on")` with
uvicorn's defaults otherwise (loop "auto" = uvloop when installed, http "auto" = httptools when
installed). Run: `python bench/bare_app.py --port 8090`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    body = await request.body()
    return Response(b'{"status":"ok","size":%d}' % len(body), media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/hooks/{source}", receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--workers", type=int, default=1, help="processes, as `serve --workers`")
    args = parser.parse_args()
    quiet = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, **quiet)  # type: ignore[arg-type]
        return
    uvicorn.run(
        "bare_app:app",
        app_dir=str(Path(__file__).resolve().parent),
        workers=args.workers,
        host=args.host,
        port=args.port,
        **quiet,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
