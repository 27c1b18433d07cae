"""Session fixtures: one real etcd + nats-server + apiserver shared by the API tests.

Tests isolate themselves by namespace (`ns` fixture), so they can share the servers. Tests that
kill processes start their own `Cluster`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.servers import Cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster().start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(**cluster.admin_kwargs(), timeout=30) as client:
        yield client


@pytest.fixture
async def ns(api: httpx.AsyncClient) -> AsyncIterator[str]:
    name = "t-" + uuid.uuid4().hex[:10]
    r = await api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    yield name
