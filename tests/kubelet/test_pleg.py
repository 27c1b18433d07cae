"""The PLEG and the runtime cache: every change is seen, and an unchanged hollow runtime is not listed.

`HollowRuntime.generation` lets the cache skip `list_containers` (and the PLEG its diff) while a
node's containers stand still; the price of a missed bump would be a pod whose exit the kubelet
never notices. So the first test changes a hollow runtime in every way its interface allows and
checks the PLEG reports the pod each time, and `test_every_public_method_is_classified` makes a new
method of `HollowRuntime` fail until someone decides whether it changes containers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from services.kubelet.hollow import HollowRuntime
from services.kubelet.pleg import Pleg, RuntimeCache, Snapshot, runtime_generation
from services.kubelet.runtime_types import ContainerConfig, ContainerKind, ContainerState, ContainerStatus
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE

NS = "default"

# methods that change the container set or a container's state (each exercised below)
MUTATORS = {"run_sandbox", "create_container", "start_container", "stop_container", "kill", "remove_container",
            "inject_exit"}
# methods that do not (images are not containers; the PLEG does not look at them)
READ_ONLY = {"version", "image_present", "ensure_image", "remove_image", "add_image", "sandbox_ip",
             "list_containers", "inspect", "logs", "exec", "pod_cidr"}


class Recorder:
    def __init__(self) -> None:
        self.events: list[set[str]] = []

    def __call__(self, uids: set[str]) -> None:
        self.events.append(set(uids))


def setup(rt: object) -> tuple[RuntimeCache, Pleg, Recorder]:
    cache = RuntimeCache(rt)  # type: ignore[arg-type]
    rec = Recorder()
    return cache, Pleg(cache, 1.0, rec), rec


def spec(name: str, restart: int = 0) -> ContainerConfig:
    return ContainerConfig(name=name, image=BUSYBOX_IMAGE, command=["sleep", "1d"], restart_count=restart)


def test_every_public_method_is_classified() -> None:
    public = {n for n, _ in inspect.getmembers(HollowRuntime) if not n.startswith("_")} - {"generation"}
    assert public == MUTATORS | READ_ONLY, (
        f"unclassified HollowRuntime methods {public - MUTATORS - READ_ONLY}: if one changes containers it must "
        "bump `generation` (HollowRuntime._put / _remove) and get a case in test_every_hollow_change_is_seen")


async def test_every_hollow_change_is_seen() -> None:
    rt = HollowRuntime(node_name="n", images=[PAUSE_IMAGE, BUSYBOX_IMAGE])
    cache, pleg, _ = setup(rt)
    assert await pleg.relist() == set()  # the first relist is the baseline
    lists = cache.lists

    async def step(what: str, change: Callable[[], Awaitable[object]], uid: str) -> object:
        before = rt.generation
        result = await change()
        assert rt.generation > before, f"{what} did not bump the generation"
        assert await pleg.relist() == {uid}, f"the PLEG missed: {what}"
        # pod workers ask the same cache: they see the change too
        snap = await cache.get(time.monotonic())
        assert snap.containers == await rt.list_containers()
        # and nothing changed since: the next relist neither lists nor reports
        n = cache.lists
        assert await pleg.relist() == set(), f"a spurious event after {what}"
        assert cache.lists == n
        return result

    async def sync(f: Callable[[], object]) -> object:
        return f()

    sb = await step("run_sandbox", lambda: rt.run_sandbox("u1", "p1", NS, 0, PAUSE_IMAGE), "u1")
    sid = sb.id  # type: ignore[attr-defined]
    c1 = str(await step("create_container", lambda: rt.create_container(sid, spec("a")), "u1"))
    await step("start_container", lambda: rt.start_container(c1), "u1")
    await step("inject_exit", lambda: sync(lambda: rt.inject_exit(c1, 3)), "u1")
    c2 = str(await step("create_container (a restart)", lambda: rt.create_container(sid, spec("a", 1)), "u1"))
    await step("start_container", lambda: rt.start_container(c2), "u1")
    await step("stop_container", lambda: rt.stop_container(c2, 5), "u1")
    c3 = str(await step("create_container", lambda: rt.create_container(sid, spec("b")), "u1"))
    await step("start_container", lambda: rt.start_container(c3), "u1")
    await step("kill SIGKILL", lambda: rt.kill(c3), "u1")
    c4 = str(await step("create_container", lambda: rt.create_container(sid, spec("c")), "u1"))
    await step("start_container", lambda: rt.start_container(c4), "u1")
    await step("kill SIGTERM", lambda: rt.kill(c4, "SIGTERM"), "u1")
    c5 = str(await step("create_container", lambda: rt.create_container(sid, spec("d")), "u1"))
    await step("inject_exit of a created container (OOM)", lambda: sync(lambda: rt.inject_exit(c5, 137, True)), "u1")
    await step("remove_container", lambda: rt.remove_container(c5), "u1")
    # a new container of an existing name replaces the leftover (DockerRuntime's recovery)
    await step("create_container over a leftover of the same name", lambda: rt.create_container(sid, spec("a", 1)), "u1")
    # a second pod: only it is reported
    await step("run_sandbox of another pod", lambda: rt.run_sandbox("u2", "p2", NS, 0, PAUSE_IMAGE), "u2")
    sb2 = await step("run_sandbox over a leftover sandbox of the same name",
                     lambda: rt.run_sandbox("u2", "p2", NS, 0, PAUSE_IMAGE), "u2")
    await step("remove_container of a sandbox", lambda: rt.remove_container(sb2.id), "u2")  # type: ignore[attr-defined]
    c6 = str(await step("create_container", lambda: rt.create_container(sid, spec("e")), "u1"))
    await step("start_container", lambda: rt.start_container(c6), "u1")
    await step("kill of the sandbox", lambda: rt.kill(sid), "u1")
    assert cache.lists > lists

    # what does not change containers does not move the generation, nor make the PLEG list
    gen, n = rt.generation, cache.lists
    await rt.kill(c1)  # already exited: nothing happens
    await rt.kill(c6, "SIGHUP")  # ignored signal
    await rt.stop_container(c1, 1)
    await rt.remove_container("no-such-container")
    await rt.inspect(c1)
    await rt.list_containers()
    await rt.ensure_image("kubenats/other:1", "IfNotPresent")
    rt.add_image("kubenats/more:1")
    await rt.remove_image("kubenats/more:1")
    assert rt.generation == gen
    assert await pleg.relist() == set() and cache.lists == n


async def test_unchanged_generation_serves_a_fresh_view_without_listing() -> None:
    rt = HollowRuntime(node_name="n", images=[PAUSE_IMAGE])
    await rt.run_sandbox("u1", "p1", NS, 0, PAUSE_IMAGE)
    cache, pleg, rec = setup(rt)
    await pleg.relist()
    first = cache.latest
    assert first is not None and cache.lists == 1 and first.generation == rt.generation
    for _ in range(5):
        t = time.monotonic()
        snap = await cache.get(t)
        assert snap.at >= t  # a view of now, as asked
        assert snap.containers is first.containers and snap.by_pod is first.by_pod  # shared, not rebuilt
        assert await pleg.relist() == set()
    assert cache.lists == 1 and cache.reuses >= 10
    assert pleg.relists == 6 and pleg.healthy()  # skipped diffs are still successful relists
    assert rec.events == []


class AsyncListingRuntime:
    """A runtime with a generation whose list takes a while: it answers the state of when it was asked,
    so a change made meanwhile is not in the answer."""

    def __init__(self) -> None:
        self.generation = 0
        self.containers: list[ContainerStatus] = []
        self.gate = asyncio.Event()
        self.calls = 0

    async def list_containers(self, all: bool = True) -> list[ContainerStatus]:
        self.calls += 1
        answer = list(self.containers)
        await self.gate.wait()
        return answer

    def add(self, uid: str) -> None:
        self.containers.append(status(uid))
        self.generation += 1


def status(uid: str, cid: str = "", state: ContainerState = ContainerState.RUNNING,
           exit_code: int | None = None) -> ContainerStatus:
    return ContainerStatus(id=cid or f"c-{uid}", name=f"k8s_c_{uid}", kind=ContainerKind.CONTAINER, pod_uid=uid,
                           pod_name=uid, pod_namespace=NS, container_name="c", attempt=0, state=state,
                           exit_code=exit_code)


async def test_a_change_during_a_list_is_listed_again() -> None:
    rt = AsyncListingRuntime()
    _, pleg, _ = setup(rt)
    rt.gate.set()
    assert await pleg.relist() == set() and rt.calls == 1  # the baseline
    rt.gate.clear()
    rt.add("u1")
    task = asyncio.create_task(pleg.relist())
    for _ in range(5):
        await asyncio.sleep(0)
    assert rt.calls == 2  # u1 made the relist list; the list is in flight
    rt.add("u2")  # lands meanwhile: not in its answer
    rt.gate.set()
    assert await task == {"u1"}
    assert await pleg.relist() == {"u2"} and rt.calls == 3  # listed again: the view was older than the count
    assert await pleg.relist() == set() and rt.calls == 3


class DockerLike:
    """A runtime without a generation (Docker: containers change behind the kubelet's back)."""

    def __init__(self) -> None:
        self.containers: dict[str, ContainerStatus] = {}
        self.calls = 0

    async def list_containers(self, all: bool = True) -> list[ContainerStatus]:
        self.calls += 1
        return list(self.containers.values())


async def test_runtimes_without_generation_are_listed_every_time() -> None:
    rt = DockerLike()
    assert runtime_generation(rt) is None
    cache, pleg, rec = setup(rt)
    rt.containers["c1"] = status("u1", "c1")
    assert await pleg.relist() == set() and rt.calls == 1
    for i in range(3):
        assert await pleg.relist() == set()
        assert rt.calls == 2 + i
    rt.containers["c1"] = status("u1", "c1", ContainerState.EXITED, 1)  # dies on its own: nobody bumps anything
    assert await pleg.relist() == {"u1"}
    del rt.containers["c1"]  # docker rm -f
    assert await pleg.relist() == {"u1"}
    assert rec.events == [{"u1"}, {"u1"}]
    snap = await cache.get(time.monotonic())
    assert snap.generation is None and rt.calls == 7


def test_generation_must_be_an_int() -> None:
    class Odd:
        generation = "7"

    class Flag:
        generation = True

    assert runtime_generation(Odd()) is None and runtime_generation(Flag()) is None
    assert runtime_generation(HollowRuntime()) == 0
    snap = Snapshot.of(1.0, [status("u1"), status("u1", "c2"), status("u2")], 4)
    again = snap.renewed(2.0)
    assert again.at == 2.0 and again.generation == 4 and again.by_pod is snap.by_pod
    assert sorted(snap.by_pod) == ["u1", "u2"] and len(snap.by_pod["u1"]) == 2
