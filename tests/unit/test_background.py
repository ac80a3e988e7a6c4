import threading

from eggproxy.background import Background


def test_one_job_per_key_at_a_time() -> None:
    background = Background(threads=2, queued=8)
    gate, done = threading.Event(), threading.Event()
    runs: list[str] = []

    def job() -> None:
        gate.wait(10)
        runs.append("a")
        done.set()

    assert background.submit("a", job)
    assert not background.submit("a", job)  # queued or running already
    assert background.pending() == 1
    gate.set()
    assert done.wait(10)
    for _ in range(1000):
        if background.pending() == 0:
            break
        threading.Event().wait(0.01)
    assert runs == ["a"] and background.pending() == 0
    background.close()
    assert not background.submit("b", job)


def test_a_full_queue_drops_the_job() -> None:
    background = Background(threads=1, queued=1)
    gate = threading.Event()
    assert background.submit(1, lambda: gate.wait(10) and None)
    accepted = [background.submit(n, lambda: None) for n in range(2, 6)]
    assert not all(accepted)  # bounded: some were dropped
    gate.set()
    background.close()


def test_threads_are_daemons() -> None:
    background = Background(threads=1)
    started = threading.Event()
    background.submit("x", started.set)
    assert started.wait(10)
    assert all(t.daemon for t in threading.enumerate() if t.name == "eggproxy-revalidate")
    background.close()
