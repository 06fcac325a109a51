"""A multi-node cluster on one machine, for tests: Ray's `ray.cluster_utils.Cluster`.

    from shoal.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2, resources={"special": 1})
    cluster.wait_for_nodes()
    shoal.init(address=cluster.address)
    ...
    cluster.remove_node(worker)
    cluster.shutdown()

Every node is a real agent process: the head is `shoal serve` (as shoal.init() starts it), and
each added node is `shoal join`, a member agent that joins the head over loopback TCP with the
cluster's secret, with an object store of its own, as a node of a Slurm allocation does
(launcher.RunMember). Tasks placed on a node run in worker processes of that node's agent, and
objects move between the nodes' stores as between machines. docs/remote-drivers.md has the
decisions.
"""
import atexit
import itertools
import json
import os
import signal
import subprocess
import time

from . import _connect
from . import _wire as w

# what add_node takes (Ray's names); anything else is refused rather than ignored
_NODE_ARGS = {"num_cpus", "num_gpus", "resources", "object_store_memory", "memory", "wait", "node_name"}
# an added node's store when the test does not say (Ray's tests give theirs; a machine's
# /dev/shm holds every node's)
DEFAULT_OBJECT_STORE_MEMORY = 256 << 20
_names = itertools.count(1)


def _binary():
    from ._api import _shoal_binary
    return _shoal_binary()


def _flags(args):
    out = []
    if args.get("num_cpus") is not None:
        out += ["--num-cpus", repr(float(args["num_cpus"]))]
    if args.get("num_gpus") is not None:
        out += ["--num-gpus", repr(float(args["num_gpus"]))]
    if args.get("resources"):
        res = args["resources"]
        if not isinstance(res, dict):
            raise TypeError(f"add_node(resources=...) must be a dict, got {res!r}")
        for k in ("CPU", "GPU"):
            if k in res:
                raise ValueError(f"add_node: give {k} with num_cpus / num_gpus, not in resources")
        out += ["--resources", json.dumps(res)]
    if args.get("memory") is not None:
        out += ["--memory", str(int(args["memory"]))]
    out += ["--object-store-memory", str(int(args.get("object_store_memory") or DEFAULT_OBJECT_STORE_MEMORY))]
    return out


def _env():
    # a node is started from this process's environment, less what names another cluster
    keep = ("SHOAL_TMPDIR", "SHOAL_LOG_LEVEL")
    return {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k in keep}


class Node:
    """One agent of a Cluster (Ray's node object: node_id, address, unique_id)."""

    def __init__(self, name, proc, head, args, address=""):
        self.node_id = name
        self.unique_id = name
        self.node_name = name
        self.process = proc
        self.head = head
        self.args = args
        self.address = address
        self.node_ip_address = "127.0.0.1"

    def __repr__(self):
        return f"Node({self.node_id}{', head' if self.head else ''})"

    def __hash__(self):
        return hash(self.node_id)

    def __eq__(self, other):
        return isinstance(other, Node) and other.node_id == self.node_id

    def alive(self):
        return self.process.poll() is None

    def kill(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass


class Cluster:
    """Ray's ray.cluster_utils.Cluster: a head node and nodes added and removed at will, all on
    this machine. `address` is what shoal.init(address=) and ray.init(address=) take."""

    def __init__(self, initialize_head=False, connect=False, head_node_args=None, shutdown_at_exit=True):
        self.head_node = None
        self.worker_nodes = set()
        self._info = None
        self._drain = None
        self.connected = False
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()
        elif connect:
            raise ValueError("Cluster(connect=True) needs initialize_head=True")

    # ---- addresses
    @property
    def address(self):
        """host:port of the head node's agent (TCP, TLS); a driver on this machine that gives it
        to init() is sent to the agent's Unix socket."""
        if self._info is None:
            raise RuntimeError("the cluster has no head node yet: add_node() first")
        return self._info["tcp"].removeprefix("tcp:")

    @property
    def gcs_address(self):
        return self.address

    @property
    def secret(self):
        return self._info["secret"] if self._info else None

    def connect(self, namespace=None, **init_kwargs):
        """shoal.init() against this cluster (Ray's Cluster.connect)."""
        from . import _api
        ctx = _api.init(address=self.address, namespace=namespace, **init_kwargs)
        self.connected = True
        return ctx

    # ---- nodes
    def add_node(self, wait=True, **node_args):
        """Start a node. The first one is the head. Takes Ray's num_cpus, num_gpus (logical on a
        machine without GPUs), resources, object_store_memory and memory, and shoal's node_name;
        returns the node."""
        for k in node_args:
            if k not in _NODE_ARGS:
                raise ValueError(f"add_node({k}=...) is not supported by shoal's Cluster; it takes {sorted(_NODE_ARGS - {'wait'})}")
        if self.head_node is None:
            return self._start_head(node_args)
        name = node_args.get("node_name") or f"node-{next(_names)}-{self._info['id'][:6]}"
        env = _env()
        env["SHOAL_SECRET"] = self._info["secret"]
        args = [_binary(), "join", "--address", self._info["tcp"], "--node-name", name, "--node-address", "127.0.0.1",
                "--cluster", self._info["id"]] + _flags(node_args)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, start_new_session=True)
        node = Node(name, proc, False, node_args)
        self.worker_nodes.add(node)
        if wait:
            self._wait(lambda alive: name in alive, 60, f"node {name} to join")
        return node

    def _start_head(self, node_args):
        args = [_binary(), "serve", "--watch-stdin"] + _flags(node_args)
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"the head node did not start (exit code {proc.returncode}); see its error above")
        self._info = json.loads(line)
        if not self._info.get("tcp"):
            proc.stdin.close()
            proc.wait()
            raise RuntimeError("the head node's agent has no TCP listener, so no other node can join it")
        self._drain = _connect.drain(proc.stdout)
        self.head_node = Node(self._head_id(), proc, True, node_args, self._info["address"])
        return self.head_node

    def remove_node(self, node, allow_graceful=True):
        """Stop a node's agent (SIGTERM, or SIGKILL when allow_graceful is False) and wait until
        the head has taken it out. Removing the head ends the cluster."""
        if node is self.head_node or (self.head_node is not None and node == self.head_node):
            self.shutdown()
            return
        if node not in self.worker_nodes:
            raise ValueError(f"{node!r} is not a node of this cluster")
        node.kill(signal.SIGTERM if allow_graceful else signal.SIGKILL)
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill(signal.SIGKILL)
            node.process.wait()
        self.worker_nodes.discard(node)
        self._wait(lambda alive: node.node_id not in alive, 60, f"the head to see node {node.node_id} gone")

    def list_all_nodes(self):
        out = [self.head_node] if self.head_node else []
        return out + sorted(self.worker_nodes, key=lambda n: n.node_id)

    def wait_for_nodes(self, timeout=30):
        """Wait until the head sees exactly the nodes added and not removed, alive."""
        want = {n.node_id for n in self.list_all_nodes()}
        self._wait(lambda alive: set(alive) == want, timeout, f"the nodes {sorted(want)}")

    # ---- the head's view
    def _head_id(self):
        conn, _, welcome = w.connect(self._info["address"], self._info["secret"], "cli")
        conn.close()
        return welcome["node"]

    def _alive_names(self, timeout):
        conn, _, _ = w.connect(self._info["address"], self._info["secret"], "cli")
        try:
            conn.sock.settimeout(timeout)
            conn.send(w.encode(w.INFO, 1, {}))
            while True:
                t, seq, body = conn.recv()
                if seq == 1:
                    break
        finally:
            conn.close()
        if t == w.ERROR:
            raise RuntimeError(f"ask the head for its nodes: {body.get('msg')}")
        return [n["id"] for n in body["nodes"] if n.get("alive")]

    def _wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        alive = []
        while True:
            for n in self.worker_nodes:
                if n.process.poll() not in (None, 0) and what.startswith(f"node {n.node_id} "):
                    raise RuntimeError(f"node {n.node_id}'s agent exited with code {n.process.returncode} before it joined")
            alive = self._alive_names(5)
            if cond(alive):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}; the head sees {sorted(alive)}")
            time.sleep(0.05)

    def shutdown(self):
        """Disconnect a driver connected through connect(), stop every node, then the head."""
        if self.connected:
            from . import _api
            _api.shutdown()
            self.connected = False
        for n in list(self.worker_nodes):
            n.kill()
        for n in list(self.worker_nodes):
            try:
                n.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                n.kill(signal.SIGKILL)
                n.process.wait()
        self.worker_nodes.clear()
        h, self.head_node = self.head_node, None
        if h is not None:
            try:
                h.process.stdin.close()
            except OSError:
                pass
            try:
                h.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                h.process.kill()
                h.process.wait()
            if self._drain is not None:
                self._drain.join(5)
            if h.process.stdout:
                h.process.stdout.close()
        self._info = None
