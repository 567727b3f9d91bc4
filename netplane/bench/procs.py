"""Helper processes the benchmarks drive over their stdin."""
import subprocess


def end_by_stdin(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Close the process's stdin (its cue to exit), wait, and kill it only
    if it will not go: it is ours, by this Popen."""
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
