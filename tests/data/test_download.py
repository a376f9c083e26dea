"""Downloads against a local server: verified, resumable, never poisoning the cache."""
import contextlib
import hashlib
import io
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _http_server import FileServer, dead_url
from cnnkit.data.download import DownloadError, download
from cnnkit.errors import CnnkitError

DATA = os.urandom(3 << 20)  # 3 MiB: several 1 MiB chunks, so drops land mid-file
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server():
    with FileServer({"data.bin": DATA}) as srv:
        yield srv


def test_correct_file_lands_in_cache(tmp_path, server):
    dest = download([server.url("data.bin")], tmp_path / "cache" / "data.bin", SHA, progress=False)
    assert dest == tmp_path / "cache" / "data.bin"
    assert dest.read_bytes() == DATA
    assert not dest.with_name("data.bin.part").exists()


def test_already_cached_file_is_not_fetched_again(tmp_path, server):
    dest = tmp_path / "data.bin"
    dest.write_bytes(DATA)
    download([server.url("data.bin")], dest, SHA, progress=False)
    assert server.requests == []


def test_wrong_checksum_leaves_nothing_in_cache(tmp_path, server):
    server.mode["data.bin"] = "wrong"
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch") as e:
        download([server.url("data.bin")], dest, SHA, progress=False)
    assert not e.value.offline
    assert str(dest) in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a poisoned .part


def test_truncated_transfer_is_not_published(tmp_path, server):
    server.mode["data.bin"] = "truncate"  # claims 3 MiB, sends 1.5 MiB, never resumes
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=r"connection ended at 1572864 of 3145728 bytes"):
        download([server.url("data.bin")], dest, SHA, progress=False)
    assert not dest.exists()
    part = tmp_path / "data.bin.part"  # kept only as .part, for a later resume
    assert part.stat().st_size == len(DATA) // 2


def test_resume_after_dropped_connection(tmp_path, server):
    server.mode["data.bin"] = "drop_once"
    dest = download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == DATA
    # First request from scratch, the second resumes where the drop left off.
    assert server.requests == [("data.bin", None), ("data.bin", f"bytes={len(DATA) // 2}-")]


def test_resume_of_partial_file_from_an_earlier_run(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(DATA[:1000])
    download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests == [("data.bin", "bytes=1000-")]


def test_stale_partial_file_is_replaced(tmp_path, server):
    # A .part from some other file: resuming gives a bad checksum, so start over once.
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)
    download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests == [("data.bin", "bytes=1000-"), ("data.bin", None)]


def test_complete_partial_file_gets_416_and_is_published(tmp_path, server):
    (tmp_path / "data.bin.part").write_bytes(DATA)
    download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_mirror_fallback(tmp_path, server):
    server.files["bad.bin"] = DATA
    server.mode["bad.bin"] = "wrong"
    urls = [dead_url("data.bin"), server.url("missing.bin"), server.url("bad.bin"),
            server.url("data.bin")]
    dest = download(urls, tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert [name for name, _ in server.requests] == ["missing.bin", "bad.bin", "data.bin"]


def test_server_down_says_offline_and_where_to_put_the_file(tmp_path):
    dest = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
    with pytest.raises(CnnkitError) as e:
        download([dead_url(), dead_url()], dest, SHA, progress=False)
    msg = str(e.value)
    assert "looks offline" in msg and f"put the file at {dest}" in msg and "\n" not in msg
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_all_mirrors_answer_with_errors_is_not_called_offline(tmp_path, server):
    with pytest.raises(DownloadError, match=r"HTTP 404") as e:
        download([server.url("missing.bin")], tmp_path / "x.bin", SHA, progress=False)
    assert not e.value.offline and "offline" not in str(e.value)


def test_timeout(tmp_path, server):
    server.mode["data.bin"] = "hang"
    with pytest.raises(DownloadError, match=r"timed out"):
        download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False,
                 timeout=0.3)


def test_progress_is_plain_text_when_not_a_terminal(tmp_path, server, capsys):
    download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=True)
    err = capsys.readouterr().err
    assert "downloading data.bin (3.1 MB)" in err and "done" in err
    assert "\x1b[" not in err and "\r" not in err


def test_progress_bar_on_a_terminal(tmp_path, server, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    fake = Tty()
    monkeypatch.setattr("sys.stderr", fake)
    download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=True)
    assert "data.bin" in fake.getvalue() and "3.1" in fake.getvalue()


# -- the published size bounds a download -------------------------------------------------------
@contextlib.contextmanager
def serve_without_length(body: bytes):
    """A local server that sends `body` with no Content-Length (HTTP/1.0: the end of the body is
    the connection's close), so a client learns the size only by reading it."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client hangs up once it has had enough
                self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/data.bin"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_body_larger_than_the_published_size_is_refused_unread(tmp_path, server):
    with pytest.raises(DownloadError, match=r"serves 3.1 MB, more than the published 1.6 MB") as e:
        download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False,
                 size=len(DATA) // 2)
    assert not e.value.offline and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written: no .part


def test_body_without_a_length_is_cut_off_at_the_published_size(tmp_path):
    with serve_without_length(DATA) as url:
        with pytest.raises(DownloadError, match=r"sent more than the published 1.0 MB"):
            download([url], tmp_path / "data.bin", SHA, progress=False, size=1 << 20)
    assert list(tmp_path.iterdir()) == []  # the bytes were not the file: no .part to resume


def test_a_catalogue_size_slightly_off_is_still_accepted(tmp_path, server):
    dest = download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False,
                    size=len(DATA) - 1000)  # the checksum, not the size, decides
    assert dest.read_bytes() == DATA


def test_file_larger_than_the_free_space_is_refused_before_writing(tmp_path, server):
    with pytest.raises(CnnkitError, match=r"not enough space to download data.bin into "
                       rf"{tmp_path}: it needs .* MB free; free some space or set CNNKIT_DATA"):
        download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False,
                 size=1 << 60)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_where_the_file_goes_is_named(tmp_path, server):
    (tmp_path / "data.bin").mkdir()
    with pytest.raises(CnnkitError, match=r"data.bin' is a folder, not a file"):
        download([server.url("data.bin")], tmp_path / "data.bin", SHA, progress=False)
    assert server.requests == []
