"""The server's connections, guarded: uvicorn with cnnkit's limits on who may hold a socket.

    server = uvicorn.Server(server_config(app))      # app from create_app: its limits apply

uvicorn closes a connection idle after an answer (`timeout_keep_alive`) but waits forever for
the first request of a new one, and for a request head sent a byte at a time; it accepts any
number of connections (each a file descriptor) and answers its own errors in plain text. Here:
- a request head must arrive whole within `header_seconds` of the connection opening or of the
  previous answer (then 408, closed), and be at most `max_header_bytes` (then 431);
- at most `max_connections` open at once, and `max_connections_per_client` from one address:
  one more is answered 503 and closed at once, so a client holding a thousand idle sockets
  takes a few descriptors, not the process's;
- every answer uvicorn would give in plain text (a malformed request, the limits above) is the
  API's JSON `{"error": "one line"}`;
- bound to loopback, a request whose Host is not localhost, 127.0.0.1 or [::1] (with the
  server's port) is refused (400): a page from another site whose name was re-pointed to
  127.0.0.1 (DNS rebinding) cannot read the API. `HostCheck` is part of the app, so it holds
  under any ASGI server.
"""
from __future__ import annotations

import http
import ipaddress
import json
from collections import Counter

import h11
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

FD_SPARE = 256  # descriptors beyond the connections: the model, its libraries, threads, logs


def error_bytes(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer `{"error": message}` that closes the connection, for the
    moments before or after h11 can frame one (no request read yet, or a malformed one)."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode("ascii") + body


def guarded_protocol(limits) -> type:
    """An H11Protocol class holding `limits` (cnnkit.serve.uploads.Limits) for its connections;
    one class per server, so the per-client counts are that server's."""
    per_client: Counter = Counter()

    class Guarded(H11Protocol):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.limit_concurrency = None  # uvicorn's own check answers in plain text: ours below
            self.head_timer = None
            self.counted = None
            self.why = None
            next_event = self.conn.next_event

            def remembering():  # uvicorn drops h11's reason; the answer should carry it
                try:
                    return next_event()
                except h11.RemoteProtocolError as e:
                    self.why = e
                    raise
            self.conn.next_event = remembering

        def connection_made(self, transport):
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if len(self.connections) > limits.max_connections:
                return self.refuse(503, f"the server holds its limit of {limits.max_connections}"
                                        " connections; try again")
            if per_client[address] >= limits.max_connections_per_client:
                return self.refuse(503, f"{address} holds {per_client[address]} connections, "
                                        f"the limit per client; close one or try again")
            per_client[address] += 1
            self.counted = address
            self.arm()

        def connection_lost(self, exc):
            self.disarm()
            if self.counted is not None:
                per_client[self.counted] -= 1
                if per_client[self.counted] <= 0:
                    del per_client[self.counted]
                self.counted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a whole head arrived
                self.disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.arm()  # the next request's head runs on the clock too

        def send_400_response(self, msg: str) -> None:
            e, self.why = self.why, None
            status = getattr(e, "error_status_hint", 400) if e else 400
            if status == 431:
                message = f"request head over the limit of {limits.max_header_bytes:,} bytes"
            else:
                message = f"malformed HTTP request: {e or msg}".rstrip(".")
            self.refuse(status, message)

        def shutdown(self) -> None:
            """The server is stopping: a request still uploading is told so (503) rather than
            held for the graceful window and then cut with a traceback; one fully read is
            answered, an idle connection closed (uvicorn's own behaviour)."""
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and cycle.more_body \
                    and not cycle.response_started:
                return self.refuse(503, "the server is stopping; send it again once it is back")
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                return self.refuse(503, "the server is stopping; send it again once it is back")
            super().shutdown()

        # -- the head's clock ---------------------------------------------------------------
        def arm(self) -> None:
            self.disarm()
            self.head_timer = self.loop.call_later(limits.header_seconds, self.head_too_slow)

        def disarm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def head_too_slow(self) -> None:
            self.head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.conn.trailing_data[0]:  # part of a head: say why it is closed
                self.refuse(408, f"the request head took longer than the limit of "
                                 f"{limits.header_seconds:g} s")
            else:  # an idle connection: closed as keep-alive closes one
                self.transport.close()

        def refuse(self, status: int, message: str) -> None:
            self.disarm()
            if not self.transport.is_closing():
                self.transport.write(error_bytes(status, message))
                self.transport.close()

    return Guarded


def server_config(app, host: str | None = None, log_level: str = "warning", **kwargs):
    """The uvicorn.Config serving `app` (from create_app) within its `app.state.limits`. On
    Ctrl+C or SIGTERM, requests being computed are answered (each is bounded by the request
    time limit, so the graceful window is that), uploads in progress are answered 503. `host`:
    the address listened on, for HostCheck (0.0.0.0 answers any Host, even over loopback)."""
    import uvicorn

    from cnnkit.serve.uploads import Limits

    state = getattr(app, "state", None)  # any other ASGI app: the default limits
    limits = getattr(state, "limits", None) or Limits()
    if host is not None and state is not None:
        state.loopback_only = _on_loopback((host, 0))
    open_files(limits.max_connections + FD_SPARE)
    kwargs.setdefault("timeout_graceful_shutdown", int(limits.request_seconds) + 1)
    return uvicorn.Config(app, http=guarded_protocol(limits), log_level=log_level,
                          access_log=False, timeout_keep_alive=limits.keep_alive_seconds,
                          limit_concurrency=limits.max_connections,
                          h11_max_incomplete_event_size=limits.max_header_bytes, **kwargs)


def open_files(wanted: int) -> int:
    """Raise this process's open-file limit to `wanted` where the system allows (the soft limit
    is often 1,024, the hard one far more); a CnnkitError naming what is possible if not."""
    from cnnkit.errors import CnnkitError

    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise ValueError
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):  # over the hard limit, or the kernel's (fs.nr_open)
        can = soft if hard == resource.RLIM_INFINITY else hard
        raise CnnkitError(f"max_connections={wanted - FD_SPARE} needs {wanted} open files "
                          f"and this process may open {can} (ulimit -n); valid: up to "
                          f"{max(1, can - FD_SPARE)}", "max_connections",
                          wanted - FD_SPARE) from None
    return wanted


# -- the Host header ----------------------------------------------------------------------------
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class HostCheck:
    """ASGI middleware: on a loopback address, only requests naming this machine by a loopback
    name (with the server's port, or none) reach the app; elsewhere every Host does."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # bound to one address: server_config says whether it is loopback; else (any ASGI
        # server) the address the connection came in on decides
        bound = getattr(scope["app"].state, "loopback_only", None) if "app" in scope else None
        if scope["type"] == "http" and (bound if bound is not None
                                        else _on_loopback(scope.get("server"))):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            port = scope["server"][1]
            allowed = {f"{name}{suffix}" for name in LOOPBACK_NAMES
                       for suffix in ("", f":{port}")}
            if host.lower() not in allowed:
                shown = repr(host[:80]) if host else "none"
                answer = JSONResponse({"error": (
                    f"Host {shown} is not this server's: bound to loopback, it answers "
                    f"only localhost, 127.0.0.1 or [::1] (port {port})")}, status_code=400)
                return await answer(scope, receive, send)
        return await self.app(scope, receive, send)


def _on_loopback(server) -> bool:
    if not server or not server[0]:
        return False
    if server[0] == "localhost":
        return True
    try:
        return ipaddress.ip_address(server[0].strip("[]")).is_loopback
    except ValueError:
        return False
