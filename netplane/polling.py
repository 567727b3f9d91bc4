"""A thread that calls `poll()` at start and then every `interval` seconds,
for the file-backed sources (the agent's nodes file, the proxy's manifests)."""
import threading


class Poller:
    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def start(self):
        self.poll()                     # the first read happens before start() returns
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
