"""`kubenats kubelet` flags to configs: one node, one hollow fleet, and a fleet split over processes."""

from __future__ import annotations

import argparse
import ipaddress
import itertools

import pytest

from services.kubelet import main as kubelet_main
from services.kubelet.hollow import SHARED_POD_CIDR


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    kubelet_main.add_arguments(p)
    return p.parse_args(list(argv))


def test_single_node_and_single_process_fleet_as_before() -> None:
    [one] = kubelet_main.configs(_args("--node-name", "Node1", "--runtime", "hollow", "--root-dir", "/r"))
    assert one.node_name == "node1" and one.node_ip == "" and str(one.root_dir) == "/r"
    assert one.hollow_pod_cidr == SHARED_POD_CIDR and one.node_lease_offset == 0
    assert not kubelet_main.is_fleet(_args("--node-name", "n", "--runtime", "hollow"))
    assert kubelet_main.nats_user(_args("--node-name", "n"), [one]) == "kubelet-node1"
    [docker] = kubelet_main.configs(_args("--node-name", "d", "--hollow-nodes", "5"))  # docker: always one node
    assert docker.node_name == "d" and not docker.hollow and docker.hollow_pod_cidr == ""

    args = _args("--node-name", "hollow", "--runtime", "hollow", "--hollow-nodes", "4", "--root-dir", "/r")
    cfgs = kubelet_main.configs(args)
    assert [c.node_name for c in cfgs] == ["hollow-0", "hollow-1", "hollow-2", "hollow-3"]
    assert [c.node_ip for c in cfgs] == ["127.1.0.1", "127.1.0.2", "127.1.0.3", "127.1.0.4"]
    assert [c.node_lease_offset for c in cfgs] == [0.0, 2.5, 5.0, 7.5]
    assert str(cfgs[1].root_dir) == "/r/hollow-1" and all(c.pod_manifest_path == "" for c in cfgs)
    assert kubelet_main.nats_user(args, cfgs) == "kubelet-hollow"


def test_fleet_split_over_processes() -> None:
    procs = [_args("--node-name", "hollow", "--runtime", "hollow", "--hollow-nodes", "3", "--hollow-first-index",
                   str(3 * j), "--node-lease-renew-interval", "12", "--hollow-pod-cidr", f"127.{64 + 4 * j}.0.0/14")
             for j in range(4)]
    cfgs = [c for a in procs for c in kubelet_main.configs(a)]
    assert [c.node_name for c in cfgs] == [f"hollow-{i}" for i in range(12)]
    assert len({c.node_ip for c in cfgs}) == 12 and cfgs[11].node_ip == kubelet_main.hollow_ip(11)
    assert {c.hollow_pod_cidr for c in cfgs} == {"127.64.0.0/14", "127.68.0.0/14", "127.72.0.0/14", "127.76.0.0/14"}
    # leases: each process renews at a steady pace, and the 4 processes interleave into 12 even slots
    assert sorted(c.node_lease_offset for c in cfgs) == [float(i) for i in range(12)]
    assert [c.node_lease_offset for c in kubelet_main.configs(procs[1])] == [2.0, 6.0, 10.0]
    assert all(kubelet_main.nats_user(a, kubelet_main.configs(a)) == "kubelet-hollow" for a in procs)

    # any --hollow-first-index makes a fleet process, even of one node (named, no server, kubelet-hollow)
    solo = _args("--node-name", "hollow", "--runtime", "hollow", "--hollow-first-index", "0")
    [cfg] = kubelet_main.configs(solo)
    assert kubelet_main.is_fleet(solo) and cfg.node_name == "hollow-0" and cfg.node_ip == "127.1.0.1"
    assert kubelet_main.nats_user(solo, [cfg]) == "kubelet-hollow"


def test_lease_offsets_fill_the_interval() -> None:
    for procs in (1, 2, 3, 4, 8):
        offsets = sorted(o for j in range(procs) for o in kubelet_main.lease_offsets(j * 100, 100, 10.0))
        assert all(0 <= o < 10.0 for o in offsets) and len(set(offsets)) == 100 * procs
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        assert max(gaps) <= 10.0 / 100 + 1e-9  # never worse than one process's own spacing


@pytest.mark.parametrize(("argv", "error"), [
    (["--hollow-first-index", "-1"], ">= 0"),
    (["--hollow-first-index", "65000", "--hollow-nodes", "600"], "65,535"),
    (["--hollow-pod-cidr", "10.64.0.0/14"], "loopback"),
    (["--hollow-pod-cidr", "127.64.0.1/14"], "host bits"),
    (["--hollow-pod-cidr", "127.0.0.0/8"], "overlaps"),
    (["--hollow-pod-cidr", "127.1.128.0/20"], "overlaps"),
])
def test_bad_hollow_flags_are_refused(argv: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        kubelet_main.check_hollow_flags(_args("--runtime", "hollow", *argv))


def test_good_hollow_flags_pass() -> None:
    kubelet_main.check_hollow_flags(_args("--runtime", "hollow", "--hollow-nodes", "1000"))
    kubelet_main.check_hollow_flags(_args("--runtime", "hollow", "--hollow-first-index", "750", "--hollow-nodes",
                                          "250", "--hollow-pod-cidr", "127.112.0.0/12"))
    kubelet_main.check_hollow_flags(_args("--hollow-pod-cidr", "anything"))  # docker: not a hollow flag
    net = ipaddress.IPv4Network(SHARED_POD_CIDR)
    assert not net.overlaps(ipaddress.IPv4Network("127.0.0.0/15"))
