"""A local HTTP file server for download tests: 127.0.0.1, a free port, Range support, and
switchable misbehaviour per file (drop the connection mid-file, wrong bytes, truncation, 404,
hang). Never touches the internet."""
from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hangs up mid-body (a download cnnkit refuses once it sees the size) is
        what some tests do on purpose: not worth a traceback on the test's stderr, which the
        tests read for cnnkit's one line. Anything else is still printed."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FileServer:
    """`with FileServer({"a.bin": data}) as srv:` then `srv.url("a.bin")`.

    srv.mode[name] is one of:
      "ok"        serve it, honouring Range requests;
      "drop_once" the first request sends half the body then closes the connection;
      "truncate"  always claims the full length but sends only the first half (ignores Range);
      "wrong"     serve other bytes of the same length;
      "404"       not found;
      "hang"      accept and never answer (for timeouts).
    srv.requests records (name, Range header or None) for every request.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.mode: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._dropped: set[str] = set()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                mode = server.mode.get(name, "ok")
                if name not in server.files or mode == "404":
                    self.send_error(404)
                    return
                if mode == "hang":  # until the server stops: the client's timeout must fire
                    server._stopping.wait()
                    return
                data = server.files[name]
                if mode == "wrong":
                    data = data.translate(bytes((i + 1) % 256 for i in range(256)))
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and mode != "truncate":
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncate" or (mode == "drop_once" and name not in server._dropped):
                    server._dropped.add(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> "FileServer":
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def dead_url(name: str = "file.bin") -> str:
    """A URL on 127.0.0.1 where nothing listens: connection refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/{name}"
