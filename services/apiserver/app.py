"""The kubenats API server: FastAPI app, lifespan and wiring.

The lifespan opens the etcd gateway and the NATS connection, makes sure the JetStream stream
exists, starts the publisher (etcd watch -> NATS) and the watch hub (NATS -> HTTP watches),
and creates what every cluster starts with: the system namespaces and the `kubernetes` Service
(first IP of the service range, port 443) with its Endpoints and EndpointSlice pointing at this
apiserver. Routes delegate to `rest.Rest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from shared.api.resources import BY_PLURAL, Resource
from shared.bus import Bus
from shared.errors import ApiError
from shared.log import event

from . import discovery, openapi, reviews, tables
from .allocator import ServiceAllocator
from .auth import Authenticator, TokenFile
from .authz import Authorization
from .config import Config, build_node_index, make_store
from .objects import SYSTEM_NAMESPACES, Objects
from .podproxy import PodProxy
from .publisher import Compactor, Publisher
from .rest import Rest, json_response, read_body, status_response
from .security import Security, caller_of
from .watch import WatchHub

log = logging.getLogger("kubenats.apiserver")


class State:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store = make_store(cfg)
        self.bus = Bus(cfg.nats_url, "kubenats-apiserver", cfg.bus_options)
        self.allocator = ServiceAllocator(self.store, cfg.service_cluster_ip_range, cfg.service_node_port_range)
        self.objects = Objects(self.store, self.allocator)
        self.hub = WatchHub(self.bus, self.store.revision, self._fetch)
        pods = PodProxy(self.objects, kubelet_scheme="https" if cfg.kubelet_ssl is not None else "http",
                        kubelet_ssl=cfg.kubelet_ssl)
        self.rest = Rest(self.objects, self.hub, render=tables.render, pods=pods)
        self.authorization = Authorization(self.objects, self.hub)
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


def kubernetes_service_objects(cluster_ip: str, address: str, port: int) -> list[tuple[Resource, dict[str, Any]]]:
    """The `kubernetes` Service in `default` and its Endpoints and EndpointSlice (this apiserver)."""
    svc = {"metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}
    eps = {"metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
           "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    eps_slice = {"metadata": {"name": "kubernetes", "namespace": "default",
                              "labels": {"kubernetes.io/service-name": "kubernetes"}},
                 "addressType": "IPv6" if ":" in address else "IPv4",
                 "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                 "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    return [(BY_PLURAL[("", "services")], svc), (BY_PLURAL[("", "endpoints")], eps),
            (BY_PLURAL[("discovery.k8s.io", "endpointslices")], eps_slice)]


async def bootstrap_kubernetes_service(objects: Objects, cfg: Config, cluster_ip: str) -> None:
    """Create the `kubernetes` Service, Endpoints and EndpointSlice, or point them at this apiserver.

    As with kube-apiserver's endpoint reconciler the apiserver that started last wins; kubenats
    runs one apiserver per cluster, so that is this one. The address is the bind address, or
    127.0.0.1 when bound to all interfaces."""
    address = cfg.bind_address if cfg.bind_address not in ("", "0.0.0.0", "::") else "127.0.0.1"
    for res, body in kubernetes_service_objects(cluster_ip, address, cfg.port):
        try:
            await objects.create(res, "default", body)
            event(log, "kubernetes_service_bootstrapped", resource=res.plural, address=address, port=cfg.port)
            continue
        except ApiError as e:
            if e.code == 422:  # e.g. the first IP is held by another Service after a range change
                event(log, "kubernetes_service_not_created", logging.ERROR, resource=res.plural, error=e.message)
                continue
            if e.code != 409:
                raise
        current = await objects.get(res, "default", "kubernetes")
        if res.plural == "services":
            if ((current.get("spec") or {}).get("ports") or [{}])[0] == body["spec"]["ports"][0]:
                continue
            merged = {**current, "spec": {**(current.get("spec") or {}), "ports": body["spec"]["ports"]}}
        else:
            wanted = {k: v for k, v in body.items() if k != "metadata"}
            if all(current.get(k) == v for k, v in wanted.items()):
                continue
            merged = {**current, **wanted}
        await objects.update(res, "default", "kubernetes", merged)
        event(log, "kubernetes_service_updated", resource=res.plural, address=address, port=cfg.port)


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
        if cfg.build_indexes:
            state.tasks.append(asyncio.create_task(build_node_index(state.objects), name="node-index"))
        for attempt in range(50):
            try:
                await bootstrap(state.objects)
                await bootstrap_kubernetes_service(state.objects, cfg, state.allocator.ips.first)
                break
            except Exception as e:
                if attempt == 49:
                    raise
                event(log, "bootstrap_retry", level=logging.WARNING, error=str(e))
                await asyncio.sleep(0.2)
        await state.authorization.start()
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
            await state.rest.pods.aclose()
            event(log, "apiserver_stopped")

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kn = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return status_response(exc)

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
    async def api() -> Response:
        return json_response(discovery.api_versions())

    @app.get("/apis")
    async def apis() -> Response:
        return json_response(discovery.api_groups())

    @app.get("/api/v1")
    async def core_resources() -> Response:
        return _resource_list("", "v1")

    @app.get("/apis/{group}/{version}")
    async def group_resources(group: str, version: str) -> Response:
        return _resource_list(group, version)

    @app.get("/openapi/v2")
    async def openapi_v2(request: Request) -> Response:
        return openapi.v2(request.headers.get("accept", ""))

    @app.get("/openapi/v3")
    async def openapi_v3() -> Response:
        return openapi.v3_index()

    @app.get("/openapi/v3/{path:path}")
    async def openapi_v3_document(path: str, request: Request) -> Response:
        return openapi.v3_document(path, request.query_params.get("hash"))

    # The resource routes carry nearly all traffic: plain Starlette routes (no FastAPI dependency
    # solving per request), with the authentication seam called explicitly.
    async def core(request: Request) -> Response:
        path = request.path_params["path"]
        if not path.strip("/") and request.method == "GET":  # `/api/v1/`, as the Python client asks
            return _resource_list("", "v1")
        return await state.rest.handle(request, "", "v1", [p for p in path.split("/") if p])

    async def grouped(request: Request) -> Response:
        pp = request.path_params
        if (pp["group"], pp["version"]) in discovery.REVIEWS:
            return await _review(request, pp["group"], pp["path"].strip("/"))
        if not pp["path"].strip("/") and request.method == "GET":  # `/apis/apps/v1/`
            return _resource_list(pp["group"], pp["version"])
        return await state.rest.handle(request, pp["group"], pp["version"], [p for p in pp["path"].split("/") if p])

    async def _review(request: Request, group: str, plural: str) -> Response:
        kinds = {p: k for p, k, _ in discovery.REVIEWS[(group, request.path_params["version"])]}
        if plural not in kinds:
            return status_response(ApiError(404, "NotFound", "the server could not find the requested resource"))
        if request.method != "POST":
            return status_response(ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"))
        try:
            body = await read_body(request)
            if not isinstance(body, dict):
                raise ValueError("the body must be an object")
        except (ApiError, ValueError) as e:
            return status_response(e if isinstance(e, ApiError) else ApiError(400, "BadRequest", str(e)))
        who = caller_of(request.scope)
        authz = state.authorization
        try:
            if plural == "selfsubjectreviews":
                out = reviews.self_subject_review(who.user, who.groups, who.uid, {k: list(v) for k, v in who.extra})
            elif plural == "selfsubjectaccessreviews":
                out = reviews.self_subject_access_review(body, who.user, who.groups, authz.authorize)
            elif plural == "subjectaccessreviews":
                out = reviews.subject_access_review(body, authz.authorize)
            else:
                out = reviews.self_subject_rules_review(body, who.user, who.groups, authz.rbac.rules_for)
        except ValueError as e:
            return status_response(ApiError(422, "Invalid", f"{kinds[plural]}.{group} is invalid: {e}"))
        return json_response(out, 201)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.router.routes.append(Route("/api/v1/{path:path}", core, methods=methods))
    app.router.routes.append(Route("/apis/{group}/{version}/{path:path}", grouped, methods=methods))
    app.router.routes.append(WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec",
                                            state.rest.pods.exec_websocket))

    tokens = TokenFile(cfg.token_auth_file) if cfg.token_auth_file else None
    app.add_middleware(Security, authn=Authenticator(tokens), authz=state.authorization,
                       admission_for=state.authorization.admission_for,
                       max_inflight=cfg.max_requests_inflight,
                       max_mutating_inflight=cfg.max_mutating_requests_inflight)
    return app


def _resource_list(group: str, version: str) -> Response:
    body = discovery.resource_list(group, version)
    if body is None:
        return status_response(ApiError(404, "NotFound", "the server could not find the requested resource"))
    return json_response(body)


