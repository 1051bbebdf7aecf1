"""Serve a model directory over HTTP for real-time scoring.

    python serve.py --model runs/latest [--host 127.0.0.1] [--port 8000]

The service is ``features.serving.create_app`` (Starlette), run here on uvicorn
(``pip install .[serve]``): ``GET /health``, ``POST /predict`` (session rows as
``predict.py`` reads them), for event-log models ``POST /events`` and
``GET /users/{user_id}/propensity?at=T``, and ``POST /reload`` (or SIGHUP) to switch to the
directory's current model without failing a request; features/serving.py describes each.
A bad request gets a 4xx status and ``{"error": "..."}``; a body over ``--max-body-bytes``
or more than ``--max-rows`` rows or events is refused with 413.

The server listens on loopback by default; it has no authentication or TLS: put it behind a
proxy that has, before exposing it.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from features.serving import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, create_app
from nn_core.io import DefaultsHelpFormatter, OneLineArgumentParser

from . import UsageError, program_name, run_command


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineArgumentParser(
        prog=program_name("serve"),
        description="Serve a model directory over HTTP (real-time scoring).",
        formatter_class=DefaultsHelpFormatter,
    )
    ap.add_argument("--model", type=Path, required=True, help="model directory (e.g. "
                    "runs/latest; POST /reload or SIGHUP reads it again)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed)")
    ap.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                    help="largest request body")
    ap.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                    help="most rows (or events) per request")
    ap.add_argument("--max-events", type=int, default=10_000_000,
                    help="most events the online state holds")
    return ap


def run(args: argparse.Namespace) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ValueError("serving needs uvicorn and starlette: pip install "
                         "'purchase-propensity[serve]'") from None
    for flag in ("max_body_bytes", "max_rows", "max_events"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in [0, 65535], got {args.port}")
    app = create_app(args.model, args.max_body_bytes, args.max_rows, args.max_events,
                     program_name("serve"))
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)  # connections wait in the backlog until the server accepts them
    except socket.gaierror as exc:  # a name that does not resolve
        sock.close()
        raise ValueError(f"--host {args.host!r}: {exc.strerror}") from None
    except OSError as exc:  # in use, not an address of this machine, a privileged port
        sock.close()
        raise ValueError(f"cannot listen on {host}:{args.port}: "
                         f"{exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"{program_name('serve')}: serving {args.model} (model "
          f"{app.state.current().info['id']}) on http://{host}:{port}", file=sys.stderr,
          flush=True)
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM: it stops listening, answers the requests in
    flight and ends by the signal (uvicorn raises it again: exit status 130 for Ctrl-C, 143
    for SIGTERM); 1 when the model cannot be loaded or the address not bound (the message
    names ``--host`` or host:port), 2 for a usage mistake."""
    args = build_parser().parse_args(argv)
    return run_command("serve", lambda: run(args), source=args.model,
                       nothing_written="nothing was written")
