"""The lab's echo server keeps serving when a client goes away first."""
import socket

import pytest

from netplane.lab import echo


class Listener:
    """A listening socket whose accepted connection resets on send, as a client that timed out
    and closed with a reset leaves it."""

    def __init__(self, error: type[OSError]) -> None:
        self.error, self.sent = error, []

    def accept(self):
        return Conn(self), ("::ffff:10.244.1.2", 40000)


class Conn:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        if self.listener.error:
            raise self.listener.error()
        self.listener.sent.append(data)


@pytest.mark.parametrize("error", [ConnectionResetError, BrokenPipeError, ConnectionAbortedError])
def test_a_client_gone_first_costs_only_its_answer(error):
    echo.answer(Listener(error), "tcp", "pod-a")            # raised before: the server died with it
    served = Listener(None)
    echo.answer(served, "tcp", "pod-a")
    assert served.sent == [b"pod-a 10.244.1.2\n"]


def test_udp_answers_with_the_senders_address():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    class Udp:
        def recvfrom(self, n):
            return b"x", ("::ffff:10.244.1.3", 5353)

        def sendto(self, data, peer):
            a.send(data)

    echo.answer(Udp(), "udp", "pod-b")
    assert b.recv(64) == b"pod-b 10.244.1.3\n"
    a.close()
    b.close()
