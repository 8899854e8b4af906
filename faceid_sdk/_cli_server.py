"""``faceid-sdk serve``: the reference server on uvicorn (needs ``faceid-sdk[server]``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ._cli_settings import (
    CONTEXT_SETTINGS,
    FaceIDCommandError,
    StoreType,
    ambiguity_option,
    threshold_option,
)
from .errors import BackendUnavailableError, FaceIDError

__all__ = ["serve"]

DEFAULT_STATIC = Path("clients") / "web"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the server to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--store", type=StoreType(),
              default=lambda: os.environ.get("FACEID_STORE", "faceid.db"),
              show_default="$FACEID_STORE or faceid.db",
              help="SQLite store of enrolled identities (created if missing).")
@threshold_option
@click.option("--index", "index_kind", type=click.Choice(["flat", "hnsw", "ivf", "milvus"]),
              default="flat", show_default=True,
              help="Gallery: exact flat scan, approximate HNSW/IVF for 100k+ templates, or "
              "Milvus (docs/scaling.md).")
@click.option("--milvus-uri",
              help="With --index milvus: a Milvus server URI, or a milvus-lite file "
              "[default: STORE.milvus.db next to the store].")
@click.option("--ef-search", type=click.IntRange(min=1),
              help="HNSW search beam width (recall vs speed) [default: 64].")
@click.option("--ef-construction", type=click.IntRange(min=1),
              help="HNSW build beam width [default: 80; 200 for ~1M templates].")
@click.option("--nprobe", type=click.IntRange(min=1),
              help="IVF lists visited per query (recall vs speed) [default: 16].")
@click.option("--model-id", help="Model id for a NEW store (default: the shipped model).")
@click.option("--dim", type=click.IntRange(min=1), help="Dimension for a NEW store.")
@click.option("--static", "static_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder served at / (default: ./clients/web if it exists).")
@click.option("--expose-distances", is_flag=True,
              help="Return raw distances (trusted deployments only: scores enable hill-climbing).")
@click.option("--require-challenge", is_flag=True,
              help="Refuse identify/verify without a fresh nonce from POST /api/v1/challenge.")
@ambiguity_option
@click.option("--rate", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Sustained requests per second per client address; 0 turns limiting off.")
@click.option("--burst", type=click.IntRange(min=1), default=20, show_default=True,
              help="Requests a client may make at once.")
@click.option("--max-body", type=click.IntRange(min=1024), default=64 * 1024, show_default=True,
              help="Largest request body in bytes.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True,
              help="Proxy address whose X-Forwarded-For is believed (repeatable).")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True,
              help="Seconds a client has to send a whole request; slower ones are cut off.")
@click.option("--max-connections-per-client", type=click.IntRange(min=1), default=64,
              show_default=True, help="Connections one address may hold open at once.")
@click.option("--demo", is_flag=True,
              help="Serve with no API keys on a non-loopback address (anyone reachable may "
              "enroll, list and remove). Without it `serve` refuses to start that way.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes sharing the store (each holds its own index and "
              "applies the others' writes before answering).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve(host: str, port: int, store: Path | str, threshold: float | str | None, index_kind: str,
          milvus_uri: str | None, ef_search: int | None, ef_construction: int | None,
          nprobe: int | None,
          model_id: str | None,
          dim: int | None, static_dir: Path | None, expose_distances: bool,
          require_challenge: bool, allow_ambiguous: bool, rate: float, burst: int,
          max_body: int, trusted_proxies: tuple[str, ...], request_timeout: float,
          max_connections_per_client: int, demo: bool,
          workers: int, log_level: str) -> None:
    """Serve the JSON API (and the browser client) over HTTP.

    Devices send encoded feature vectors, never images; answers carry decisions and
    identities, not distances. API under /api/v1, spec at /api/v1/openapi.json.
    """
    try:
        import uvicorn

        from .server import ServerSettings, create_app
        from .server._transport import uvicorn_limits
    except ImportError as exc:
        raise FaceIDCommandError(BackendUnavailableError(
            f"the server needs starlette and uvicorn ({exc.name} is missing): "
            "install 'faceid-sdk[server]'")) from exc
    from ._enroll import open_or_create

    if static_dir is None and DEFAULT_STATIC.is_dir():
        static_dir = DEFAULT_STATIC
    if static_dir is not None and not static_dir.is_dir():
        raise click.BadParameter(f"{str(static_dir)!r} is not a folder", param_hint="--static")
    audit = logging.getLogger("faceid_sdk.audit")
    if not audit.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("audit %(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
    if workers > 1 and index_kind == "milvus" and "://" not in (milvus_uri or ""):
        raise click.BadParameter(
            "a milvus-lite file serves one process: give --milvus-uri of a Milvus server, or "
            "use --workers 1", param_hint="--workers")
    if workers > 1 and require_challenge:
        raise click.BadParameter(
            "challenge nonces live in one process: use --workers 1 with --require-challenge",
            param_hint="--workers")
    # Each knob, the index it tunes, and its flag.
    knobs = {"ef_search": (ef_search, "hnsw", "--ef-search"),
             "ef_construction": (ef_construction, "hnsw", "--ef-construction"),
             "nprobe": (nprobe, "ivf", "--nprobe")}
    options: dict[str, Any] = {}
    if milvus_uri is not None:
        if index_kind != "milvus":
            raise click.BadParameter("applies to --index milvus only", param_hint="--milvus-uri")
        options["uri"] = milvus_uri
    for name, (value, kind, flag) in knobs.items():
        if value is None:
            continue
        if index_kind != kind:
            raise click.BadParameter(f"applies to --index {kind} only", param_hint=flag)
        options[name] = value
    try:
        enroller = open_or_create(store, model_id=model_id, dim=dim, threshold=threshold,
                                  index=index_kind, index_options=options,
                                  reject_ambiguous=not allow_ambiguous)
        try:
            enroller.check_store()
        except FaceIDError:
            enroller.close()
            raise
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    settings = ServerSettings(
        max_body_bytes=max_body, rate_per_second=rate or None, rate_burst=burst,
        trusted_proxies=trusted_proxies, expose_distances=expose_distances,
        require_challenge=require_challenge,
        auth="open" if demo else "auto", static_dir=static_dir,
        request_timeout_seconds=request_timeout,
        max_connections_per_client=max_connections_per_client,
    )
    try:
        _check_exposure(host, enroller, demo)
    except click.UsageError:
        enroller.close()
        raise
    if workers > 1:
        _serve_workers(enroller, store, index_kind, options, settings,
                       host, port, workers, log_level)
        return
    _exit_cleanly_on_sigterm()
    try:
        app = create_app(enroller, settings=settings)
        click.echo(_banner(store, enroller, settings), err=True)
        if static_dir is not None:
            click.echo(f"faceid-sdk: serving {static_dir} at http://{host}:{port}/", err=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level,
                    **uvicorn_limits(settings))
    finally:
        enroller.close()


def _check_exposure(host: str, enroller: Any, demo: bool) -> None:
    """Refuse to serve an open API (no keys) beyond loopback, unless told it is a demo."""
    import ipaddress

    if demo or enroller.has_api_keys():
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise click.UsageError(
            f"refusing to serve {host} with no API keys: anyone who reaches it could enroll, "
            "list and remove people. Create keys first (`faceid-sdk keys create kiosk --scope "
            "device`, `faceid-sdk keys create admin --scope operator`), or pass --demo for a "
            "throwaway demo")


def _banner(store: Path | str, enroller: Any, settings: Any, workers: int = 1) -> str:
    from ._stores import describe

    limit = ("off" if settings.rate_per_second is None
             else f"{settings.rate_per_second:g}/s, burst {settings.rate_burst}")
    return (
        f"faceid-sdk: store {describe(store)}: {len(enroller)} identities, model "
        f"{enroller.model_id} (dim {enroller.dim})\n"
        f"faceid-sdk: threshold {enroller.threshold}; ambiguous matches "
        f"{'refused' if enroller.policy.reject_ambiguous else 'allowed'}; distances "
        f"{'exposed' if settings.expose_distances else 'hidden'}; rate limit {limit}; "
        f"{workers} worker(s)\n"
        + ("faceid-sdk: API keys required (scoped)" if enroller.has_api_keys() and
           settings.auth != "open" else
           "faceid-sdk: WARNING: no API keys: the API is open to whoever reaches it "
           "(`faceid-sdk keys create` to close it)")
    )




def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM (``docker stop``, ``systemctl stop``) shut down like SIGINT does.

    uvicorn stops gracefully on either, then raises the signal again with the previous
    handler in place; with the default SIGTERM handler that kills the process before the
    ``finally`` that saves the index. This handler turns it into a clean exit instead.
    """
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _serve_workers(enroller: Any, store: Path | str, index_kind: str,
                   options: dict[str, Any], settings: Any, host: str, port: int,
                   workers: int, log_level: str) -> None:
    """Run *workers* uvicorn processes; each rebuilds the app from the environment."""
    import uvicorn

    from .server._transport import uvicorn_limits
    from .server._workers import ENVIRONMENT_VARIABLE, worker_environment

    click.echo(_banner(store, enroller, settings, workers), err=True)
    # The parent made (or checked) the store and saved a fresh index file for the workers.
    enroller.close()
    os.environ[ENVIRONMENT_VARIABLE] = worker_environment(
        store, policy=enroller.policy, index=index_kind, index_options=options,
        settings=settings)
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("faceid_sdk.server._workers:app_from_environment", factory=True,
                            workers=workers, host=host, port=port, log_level=log_level,
                            **uvicorn_limits(settings))
    sock = config.bind_socket()
    # uvicorn's shared socket is made without IPPROTO_TCP, so asyncio never sets
    # TCP_NODELAY on the connections and every keep-alive answer waits ~40 ms for a
    # delayed ACK. Accepted sockets inherit the option from the listening one on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
