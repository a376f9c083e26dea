"""A note printed while a terminal bar is live (the threads notice, early stopping's restore)
gets a line of its own above the bar, never the bar's line: not `accuracy: 0.0625Threads: ...`."""
import io

from cnnkit.train.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_note_during_a_live_bar_is_a_line_of_its_own():
    screen = Terminal()
    bar = Progress(1, 1, stream=screen)
    bar.epoch_begin(0, 10)
    bar.batch(3, "loss: 0.5000 - accuracy: 0.0625")
    bar.say("Threads: 1 of 2 (steps slowed down)")
    bar.batch(5, "loss: 0.4000 - accuracy: 0.0625")
    bar.epoch_end(0, {"loss": 0.4, "accuracy": 0.5, "time": 1.0})
    out = screen.getvalue()
    # the bar's line is erased (ESC [2K) before the note, which ends its own line
    assert "\r\x1b[2KThreads: 1 of 2 (steps slowed down)\n" in out
    assert out.endswith("Epoch 1/1 - 1.0s - loss: 0.4000 - accuracy: 0.5000\n")


def test_a_note_in_a_pipe_is_a_plain_line():
    pipe = io.StringIO()
    bar = Progress(1, 1, stream=pipe)
    bar.epoch_begin(0, 10)
    bar.say("Threads: 1 of 2 (steps slowed down)")
    bar.epoch_end(0, {"loss": 0.4, "time": 1.0})
    assert pipe.getvalue() == ("Threads: 1 of 2 (steps slowed down)\n"
                               "Epoch 1/1 - 1.0s - loss: 0.4000\n")
