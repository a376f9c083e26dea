"""A step that takes seconds (`cnnkit report`, `inspect`, `export`'s parity check) shows a
spinner with its name on a terminal, and nothing in a pipe (stdout stays the result, stderr an
error's one line)."""
import io
import time

from cnnkit.train.progress import working


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_step_is_named_while_it_runs_then_erased():
    screen = Terminal()
    with working("Drawing runs/a's report.html", stream=screen):
        time.sleep(0.3)
    out = screen.getvalue()
    assert "Drawing runs/a's report.html ..." in out
    assert out.endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # the cursor back, the line erased


def test_in_a_pipe_nothing_is_written():
    pipe = io.StringIO()
    with working("Drawing runs/a's report.html", stream=pipe):
        pass
    assert pipe.getvalue() == ""
