"""One contract, every `Registry`: the in-memory store and the network client."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from registry.client import RegistryClient
from registry.errors import BadRequest, DuplicateService, PermissionDenied, ServiceNotFound
from registry.protocol import Registry
from registry.registration import Registration
from registry.store import Store


@pytest.fixture(params=["store", "client"])
def make(request: pytest.FixtureRequest, serve_thread: Callable[..., object],
         secret: bytes) -> Iterator[Callable[[str], Registry]]:
    """make(owner) -> a Registry acting for `owner`, all sharing one registry."""
    if request.param == "store":
        store = Store()

        class AsOwner:
            def __init__(self, owner: str) -> None:
                self.owner = owner

            def register(self, name, attrs=()):  # type: ignore[no-untyped-def]
                return store.register(name, attrs, owner=self.owner)

            def update(self, name, attrs):  # type: ignore[no-untyped-def]
                return store.update(name, attrs, owner=self.owner)

            def unregister(self, name):  # type: ignore[no-untyped-def]
                return store.unregister(name, owner=self.owner)

            def find(self, query=()):  # type: ignore[no-untyped-def]
                return store.find(query)

            def index(self):  # type: ignore[no-untyped-def]
                return store.index()

        yield AsOwner
        return
    server = serve_thread(secret=secret)
    clients: list[RegistryClient] = []

    def client(owner: str) -> RegistryClient:
        c = RegistryClient(server.url, secret=secret, owner=owner)  # type: ignore[attr-defined]
        clients.append(c)
        return c

    yield client
    for c in clients:
        c.close()


def test_store_and_client_satisfy_the_protocol(serve_thread: Callable[..., object], secret: bytes) -> None:
    assert isinstance(Store(), Registry)
    server = serve_thread(secret=secret)
    with RegistryClient(server.url, secret=secret) as c:  # type: ignore[attr-defined]
        assert isinstance(c, Registry)


def test_register_find_index(make: Callable[[str], Registry]) -> None:
    r = make("alice")
    r.register("tcp!h0!1", [("name", "h0"), ("id", "chunk0")])
    r.register("tcp!h1!1", {"name": "h1", "note": "it's here"})
    assert [s.name for s in r.find({"name": "h0"})] == ["tcp!h0!1"]
    assert [s.name for s in r.find({"id": "*"})] == ["tcp!h0!1"]
    assert [s.line() for s in r.index()] == ["tcp!h0!1 name h0 id chunk0", "tcp!h1!1 name h1 note 'it''s here'"]


def test_errors_are_inferno_strings(make: Callable[[str], Registry]) -> None:
    alice, bob = make("alice"), make("bob")
    alice.register("x", {"a": "1"})
    with pytest.raises(DuplicateService, match="duplicate service name"):
        bob.register("x", {"a": "2"})
    with pytest.raises(PermissionDenied, match="permission denied"):
        bob.update("x", {"a": "2"})
    with pytest.raises(PermissionDenied, match="permission denied"):
        bob.unregister("x")
    with pytest.raises(BadRequest, match="bad service name"):
        alice.register("a/b")
    with pytest.raises(ServiceNotFound):
        alice.unregister("nope")
    assert alice.update("x", {"b": "2"}).attrs == (("a", "1"), ("b", "2"))
    alice.unregister("x")
    assert alice.index() == []


def test_registration_context_manager(make: Callable[[str], Registry]) -> None:
    r = make("alice")
    with Registration(r, "tcp!h!9", {"svc": "rstyx"}) as reg:
        assert [s.name for s in r.find({"svc": "rstyx"})] == ["tcp!h!9"]
        reg.update({"load": "3"})
        assert r.find({"load": "3"})[0].name == "tcp!h!9"
    assert r.find({"svc": "rstyx"}) == []
    reg.close()                                        # idempotent
    with Registration(r, "p", {"a": "1"}, persist=True):
        pass
    assert [s.line() for s in r.index()] == ["p a 1 persist 1"]
