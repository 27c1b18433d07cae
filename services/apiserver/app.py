"""The kubenats API server: FastAPI app, lifespan and wiring.

The lifespan opens the etcd gateway and the NATS connection, makes sure the JetStream stream
exists, starts the publisher (etcd watch -> NATS) and the watch hub (NATS -> HTTP watches),
and creates the namespaces every cluster starts with. Routes delegate to `rest.Rest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route

from shared.api.resources import BY_PLURAL, Resource
from shared.bus import Bus, BusOptions
from shared.errors import ApiError
from shared.log import event

from . import auth, discovery
from .objects import SYSTEM_NAMESPACES, Objects
from .publisher import Compactor, Publisher
from .rest import Rest, json_response, status_response
from .storage import Store
from .watch import WatchHub

log = logging.getLogger("kubenats.apiserver")


@dataclass
class Config:
    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    nats_url: str = "nats://127.0.0.1:4222"
    bind_address: str = "127.0.0.1"
    port: int = 6443
    publish: bool = True
    bus_options: BusOptions = field(default_factory=BusOptions)


class State:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store = Store(cfg.etcd_servers)
        self.bus = Bus(cfg.nats_url, "kubenats-apiserver", cfg.bus_options)
        self.objects = Objects(self.store)
        self.hub = WatchHub(self.bus, self.store.revision, self._fetch)
        self.rest = Rest(self.objects, self.hub)
        self.publisher = Publisher(self.store, self.bus)
        self.compactor = Compactor(self.store, self.publisher)
        self.tasks: list[asyncio.Task[None]] = []

    async def _fetch(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.objects.get(res, namespace, name)
        except ApiError:
            return None


async def bootstrap(objects: Objects) -> None:
    ns = BY_PLURAL[("", "namespaces")]
    for name in SYSTEM_NAMESPACES:
        try:
            await objects.create(ns, "", {"metadata": {"name": name}})
            event(log, "namespace_bootstrapped", name=name)
        except ApiError as e:
            if e.code != 409:
                raise


def create_app(cfg: Config) -> FastAPI:
    state = State(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.store.open()
        await state.bus.connect()
        await state.bus.ensure_stream()
        if cfg.publish:
            await state.publisher.prepare()
            state.tasks.append(asyncio.create_task(state.publisher.run(), name="publisher"))
            state.tasks.append(asyncio.create_task(state.compactor.run(), name="compactor"))
        await state.hub.start()
        for attempt in range(50):
            try:
                await bootstrap(state.objects)
                break
            except Exception as e:
                if attempt == 49:
                    raise
                event(log, "bootstrap_retry", level=logging.WARNING, error=str(e))
                await asyncio.sleep(0.2)
        event(log, "apiserver_ready", port=cfg.port, etcd=cfg.etcd_servers, nats=cfg.nats_url)
        try:
            yield
        finally:
            await state.hub.stop()
            for t in state.tasks:
                t.cancel()
            for t in state.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await state.bus.close()
            await state.store.close()
            event(log, "apiserver_stopped")

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kn = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return status_response(exc)

    async def caller(request: Request) -> auth.Caller:
        return await auth.authenticate(request)

    @app.get("/healthz")
    @app.get("/livez")
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        ok_etcd = await state.store.healthy()
        ok_nats = state.bus.connected
        if ok_etcd and ok_nats:
            return Response("ok", media_type="text/plain")
        detail = f"[{'+' if ok_etcd else '-'}]etcd\n[{'+' if ok_nats else '-'}]nats\nreadyz check failed"
        return Response(detail, status_code=503, media_type="text/plain")

    @app.get("/version")
    async def version() -> Response:
        return json_response(discovery.VERSION)

    @app.get("/api")
    async def api(who: auth.Caller = Depends(caller)) -> Response:
        return json_response(discovery.api_versions())

    @app.get("/apis")
    async def apis(who: auth.Caller = Depends(caller)) -> Response:
        return json_response(discovery.api_groups())

    @app.get("/api/v1")
    async def core_resources(who: auth.Caller = Depends(caller)) -> Response:
        return _resource_list("", "v1")

    @app.get("/apis/{group}/{version}")
    async def group_resources(group: str, version: str, who: auth.Caller = Depends(caller)) -> Response:
        return _resource_list(group, version)

    # The resource routes carry nearly all traffic: plain Starlette routes (no FastAPI dependency
    # solving per request), with the authentication seam called explicitly.
    async def core(request: Request) -> Response:
        await auth.authenticate(request)
        path = request.path_params["path"]
        return await state.rest.handle(request, "", "v1", [p for p in path.split("/") if p])

    async def grouped(request: Request) -> Response:
        await auth.authenticate(request)
        pp = request.path_params
        return await state.rest.handle(request, pp["group"], pp["version"], [p for p in pp["path"].split("/") if p])

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.router.routes.append(Route("/api/v1/{path:path}", core, methods=methods))
    app.router.routes.append(Route("/apis/{group}/{version}/{path:path}", grouped, methods=methods))

    return app


def _resource_list(group: str, version: str) -> Response:
    body = discovery.resource_list(group, version)
    if body is None:
        return status_response(ApiError(404, "NotFound", "the server could not find the requested resource"))
    return json_response(body)


