"""`cnnkit serve MODEL_OR_RUN [--host 127.0.0.1] [--port 8000]`: the web demo and its JSON API
(cnnkit.serve.app) on uvicorn."""
from __future__ import annotations

DEFAULTS = {"max_upload_mb": 5.0, "max_pixels": 4096 * 4096, "timeout": 10.0, "concurrency": 2,
            "header_timeout": 10.0, "max_connections": 1000, "max_connections_per_client": 64}


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser(
        "serve", help="serve a model: a page to draw or drop images on, and a JSON API",
        description="Starts a web server with a page that classifies what you draw (28×28 "
                    "grayscale models) or drop (any model): the top classes as bars, live as "
                    "you draw, the exact input the model saw, each convolution's feature maps "
                    "and Grad-CAM, and the model's card. Beside it a JSON API (POST "
                    "/api/predict, POST /api/inspect, GET /api/model, GET /healthz) documented "
                    "at /docs. Everything is served by cnnkit itself: it works offline.")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 "
                        "lets other machines in)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0 "
                                                          "picks a free one)")
    flags.add(p, "--runtime", "; auto: the runtime cnnkit measured faster, an .onnx file onnx "
              "(default: auto). Feature maps and Grad-CAM always "
              "use the PyTorch model, so a bare .onnx file serves predictions only",
              default="auto")
    flags.add(p, "--threads", " per prediction; auto: the cores idle when the server starts, "
              "or CNNKIT_THREADS (default: auto)", type=flags.threads)
    p.add_argument("--top-k", type=int, default=5, help="classes shown as bars (default: 5)")
    p.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"],
                   help="requests computed at once (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULTS["max_upload_mb"],
                   help="largest request body in MiB (default: %(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULTS["max_pixels"],
                   help="largest uploaded image, width × height (default: %(default)s = "
                        "4096×4096)")
    p.add_argument("--timeout", type=float, default=DEFAULTS["timeout"],
                   help="seconds a request may take, upload included (default: %(default)s)")
    p.add_argument("--header-timeout", type=float, default=DEFAULTS["header_timeout"],
                   help="seconds a client has to send a request's head, from connecting or "
                        "the previous answer, before it is closed (default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=DEFAULTS["max_connections"],
                   help="connections open at once; one more is answered 503 and closed "
                        "(default: %(default)s)")
    p.add_argument("--max-connections-per-client", type=int,
                   default=DEFAULTS["max_connections_per_client"],
                   help="connections open at once from one address (default: %(default)s)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import signal

    from cnnkit.errors import CnnkitError

    from cnnkit.cli.inspect import check_runtime

    check_runtime(args.runtime)  # before the port opens
    if args.top_k < 1:
        raise CnnkitError(f"--top-k {args.top_k} is out of range; valid: 1 or more")
    if not 0 <= args.port <= 65535:
        raise CnnkitError(f"--port {args.port} is out of range; valid: 0 to 65535")
    limits = _limits(args)
    sock = listen(args.host, args.port)  # before the model loads: a busy port fails at once
    try:
        import uvicorn

        from cnnkit.serve.app import create_app
        from cnnkit.serve.connections import server_config
        from cnnkit.serve.predictor import Predictor

        try:
            predictor = Predictor(args.model, runtime=args.runtime, threads=args.threads)
        except CnnkitError as e:
            raise e.restated("--threads") if e.option == "threads" else e from None
        app = create_app(predictor, limits, top_k=args.top_k)
        host, port = sock.getsockname()[:2]
        everywhere = host in ("0.0.0.0", "::")
        shown = "127.0.0.1" if everywhere else f"[{host}]" if ":" in host else host
        print(f"Serving {predictor.name} ({predictor.runtime}) at http://{shown}:{port}/  "
              f"(API docs: http://{shown}:{port}/docs; Ctrl+C stops)"
              + (f"; listening on every address of this machine ({host})" if everywhere else ""),
              flush=True)
        try:
            config = server_config(app, host)
        except CnnkitError as e:
            raise e.restated("--max-connections") if e.option == "max_connections" else e \
                from None
        server = uvicorn.Server(config)
        # uvicorn stops on Ctrl+C and SIGTERM alike, then raises the signal again: for Ctrl+C a
        # KeyboardInterrupt, for SIGTERM this no-op, so both end here, a normal end
        before = signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, before)
        if server.should_exit:
            print("Stopped.", flush=True)
    finally:
        sock.close()
    return 0


def _limits(args):
    from cnnkit.errors import CnnkitError
    from cnnkit.serve.uploads import Limits

    checks = [("--max-upload-mb", args.max_upload_mb, "a number > 0"),
              ("--max-pixels", args.max_pixels, "an integer >= 1"),
              ("--timeout", args.timeout, "a number of seconds > 0"),
              ("--concurrency", args.concurrency, "an integer >= 1"),
              ("--header-timeout", args.header_timeout, "a number of seconds > 0"),
              ("--max-connections", args.max_connections, "an integer >= 1"),
              ("--max-connections-per-client", args.max_connections_per_client,
               "an integer >= 1")]
    for flag, value, valid in checks:
        if not value > 0 or value != value or value == float("inf"):
            raise CnnkitError(f"{flag} {value:g} is out of range; valid: {valid}")
    return Limits(max_upload_bytes=max(1, int(args.max_upload_mb * 2**20)),
                  max_pixels=args.max_pixels, request_seconds=float(args.timeout),
                  concurrency=args.concurrency, header_seconds=float(args.header_timeout),
                  max_connections=args.max_connections,
                  max_connections_per_client=args.max_connections_per_client)


def listen(host: str, port: int):
    """A listening socket on host:port; a CnnkitError naming the host or port if it can't be."""
    import errno
    import socket

    from cnnkit.errors import CnnkitError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise CnnkitError(f"--host {host}: not an address of this machine ({e}); valid: an IP "
                          "address or host name, such as 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # no wait after a restart
        sock.bind(address)
        sock.listen(2048)  # uvicorn's own backlog: a burst of connections waits, not dropped
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CnnkitError(f"--port {port}: already in use on {host}; stop what uses it or "
                              "choose another --port (0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise CnnkitError(f"--port {port}: permission denied on {host} (ports below 1024 "
                              "need privileges); choose a port from 1024") from None
        raise CnnkitError(f"--host {host} --port {port}: cannot listen there: "
                          f"{e.strerror or e}") from None
    sock.setblocking(False)
    return sock
