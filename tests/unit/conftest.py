"""The unit tier never reaches the kernel: opening a netlink channel or
starting an agent is an error here, so a validation bug that lets a unit
test through to real work fails loudly instead of wiring the host."""
import pytest

from netplane.agent import main as agent_main
from netplane.kube import client
from netplane.kube.fake_apiserver import FakeApiServer
from netplane.netlink.channel import Channel
from netplane.podnet import controller


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("unit tests must not reach the kernel (netlink) or start an agent")

    monkeypatch.setattr(Channel, "open", classmethod(forbidden))
    monkeypatch.setattr(agent_main, "run", forbidden)
    monkeypatch.setattr(controller, "IPRoute", forbidden)


@pytest.fixture
def fake():
    """An in-process API server on 127.0.0.1 (a socket, not a kernel change)."""
    with FakeApiServer(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(fake, tmp_path):
    with client.api_client(fake.kubeconfig(tmp_path / "kubeconfig")) as api:
        yield api
