"""Progress while the benchmark runs: a rich bar on a terminal (mode, size,
step), plain lines elsewhere (a log, CI, the VM's console)."""
import sys
import time


class Lines:
    """One line per step, flushed (the VM's guest streams them to the host)."""

    def __init__(self, out=None) -> None:
        self.out, self.total, self.done = out or sys.stdout, 0, 0
        self.started = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, text: str) -> None:
        print(f"[{min(self.done + 1, self.total)}/{self.total} {time.monotonic() - self.started:5.0f} s] {text}",
              file=self.out, flush=True)

    def advance(self, n: int = 1) -> None:
        self.done += n

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


class Bar(Lines):
    """rich's progress bar; say() prints above it."""

    def __init__(self, console=None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__()
        self.console = console or Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=True)
        self.task = self.bar.add_task("starting", total=None)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, completed=0)

    def step(self, text: str) -> None:
        self.bar.update(self.task, description=text)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def pause(self) -> None:
        """Let another process write to the terminal (the VM's output)."""
        self.bar.stop()

    def resume(self) -> None:
        self.bar.start()


def make(plain: bool):
    return Lines() if plain or not sys.stderr.isatty() else Bar()
