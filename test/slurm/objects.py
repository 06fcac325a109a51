"""Objects moving between the nodes of a 3-node Slurm cluster (run by test/slurm/objects.sh under
`srun shoal launch`): every check prints one line "CHECK <name> <True|False> <detail>"."""
import hashlib
import os
import subprocess
import sys

import numpy as np

import shoal as ray

MIB = 1 << 20
ray.init()
print("CLUSTER", os.environ["SHOAL_CLUSTER_ID"], flush=True)


def check(name, ok, detail=""):
    print("CHECK", name, bool(ok), detail, flush=True)


def array(seed, nbytes):
    return np.random.default_rng(seed).integers(0, 2**62, size=nbytes // 8, dtype=np.int64)


def digest(a):
    return hashlib.sha256(memoryview(a).cast("B")).hexdigest()


# every node offers a resource named after it (objects.sh starts `shoal launch --resources
# '{"on_nodeN": 100}'` on each), so that a task can be sent to a node by name


def on(node):
    return {"on_" + node: 1}


@ray.remote(num_cpus=1)
def where():
    return os.environ["SHOAL_NODE_ID"]


mode = sys.argv[1] if len(sys.argv) > 1 else "all"
if mode != "tcp_driver":
    got = {n: ray.get(where.options(resources=on(n)).remote()) for n in ("node1", "node2", "node3")}
    check("placement", all(k == v for k, v in got.items()), got)


@ray.remote(num_cpus=1)
def where_addr():
    return os.environ["SHOAL_ADDRESS"]


@ray.remote(num_cpus=1)
def produce(seed, nbytes):
    return array(seed, nbytes)


@ray.remote(num_cpus=1)
def consume(a):
    return digest(a), a.nbytes, os.environ["SHOAL_NODE_ID"]


if mode == "tcp_driver":
    # started by the "all" run below with SHOAL_ADDRESS=tcp:<head>: a driver connected over TCP
    # with no store of its own gets arrays that live only in node2's store
    assert os.environ["SHOAL_ADDRESS"].startswith("tcp:") and "SHOAL_STORE_ADDRESS" not in os.environ
    a = ray.get(produce.options(resources=on("node2")).remote(3, 150 * MIB))
    print("TCPDRIVER", digest(a), a.nbytes, flush=True)
    # more than one answer holds: read in parts (READ_PART, docs/remote-drivers.md)
    b = ray.get(produce.options(resources=on("node2")).remote(4, 300 * MIB))
    print("BIGDRIVER", digest(b), b.nbytes, flush=True)
    sys.exit(0)

if mode in ("all", "big"):
    # a 300 MiB array made on node2, read by the driver on node1 (more than one 256 MiB frame)
    ref = produce.options(resources=on("node2")).remote(1, 300 * MIB)
    a = ray.get(ref)
    check("node2_300mib_to_driver", digest(a) == digest(array(1, 300 * MIB)) and a.nbytes == 300 * MIB, a.nbytes)
    del a, ref

if mode == "all":
    # several objects from node2 and node3 at once
    refs = [produce.options(resources=on("node2" if i % 2 else "node3")).remote(10 + i, 24 * MIB)
            for i in range(6)]
    got = ray.get(refs)
    check("concurrent_gets", all(digest(g) == digest(array(10 + i, 24 * MIB)) for i, g in enumerate(got)), len(got))
    del got, refs

    # tasks on node3 consume an object the driver put (on node1)
    big = ray.put(array(7, 100 * MIB))
    want = digest(array(7, 100 * MIB))
    outs = ray.get([consume.options(resources=on("node3")).remote(big) for _ in range(3)])
    check("node3_consumes_driver_put", all(o == (want, 100 * MIB, "node3") for o in outs), outs[0][1:])
    # and a task on node2 passes its own (large) result straight to a task on node3
    mid = produce.options(resources=on("node2")).remote(8, 64 * MIB)
    out = ray.get(consume.options(resources=on("node3")).remote(mid))
    check("node2_result_to_node3_task", out == (digest(array(8, 64 * MIB)), 64 * MIB, "node3"), out[1:])
    del big, mid

    # a driver connected over TCP, without a store of its own (here on node1, but it could be
    # anywhere that reaches the head), gets an array a task returned on node2: the head node's
    # agent pulls it into its store and sends it in the answer; one larger than a message is
    # refused with a clear error
    tcp = ray.get(where_addr.options(resources=on("node2")).remote())
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_STORE_ADDRESS"}
    env["SHOAL_ADDRESS"] = tcp
    r = subprocess.run([sys.executable, __file__, "tcp_driver"], env=env, capture_output=True, text=True, timeout=240)
    line = next((ln.split() for ln in r.stdout.splitlines() if ln.startswith("TCPDRIVER ")), None)
    check("tcp_driver_gets_node2_array", r.returncode == 0 and tcp.startswith("tcp:") and line is not None
          and line[1:] == [digest(array(3, 150 * MIB)), str(150 * MIB)],
          f"{tcp} rc={r.returncode} {line} {r.stderr[-2000:]!r}")
    big = next((ln.split() for ln in r.stdout.splitlines() if ln.startswith("BIGDRIVER ")), None)
    check("tcp_driver_gets_300mib_in_parts", big is not None and big[1:] == [digest(array(4, 300 * MIB)), str(300 * MIB)], big)



@ray.remote(num_cpus=1, max_retries=2)
def killed_once(marker, seed, nbytes):
    # the first attempt writes half of its return value into node2's store and is killed
    import shoal._client as C
    if not os.path.exists(marker):
        open(marker, "w").close()

        def half_then_die(self, path, offset, ser):
            fd = os.open(path, os.O_RDWR)
            os.pwrite(fd, b"\x93" * (ser.size // 2), offset)
            os.close(fd)
            os.kill(os.getpid(), 9)
        C.Client._write = half_then_die
    return array(seed, nbytes)


if mode == "all":
    # a task on node2 whose worker dies while writing its return value there is retried, and
    # the retry's value is what get returns (the dead attempt's unsealed object is dropped)
    import tempfile
    marker = os.path.join(tempfile.mkdtemp(dir="/tmp"), "first-attempt")
    try:
        a = ray.get(killed_once.options(resources=on("node2")).remote(marker, 9, 32 * MIB))
        check("node2_retry_after_worker_killed_mid_write", os.path.exists(marker) and digest(a) == digest(array(9, 32 * MIB)),
              a.nbytes)
        del a
    except Exception as e:  # noqa: BLE001 - the check reports what went wrong
        check("node2_retry_after_worker_killed_mid_write", False, repr(e))
    finally:
        import shutil
        shutil.rmtree(os.path.dirname(marker), ignore_errors=True)

if mode == "spill":
    # node2's store (--object-store-memory) holds one of these at a time: the others spill
    refs = [produce.options(resources=on("node2")).remote(20 + i, 150 * MIB) for i in range(3)]
    ok = all(digest(ray.get(r)) == digest(array(20 + i, 150 * MIB)) for i, r in enumerate(refs))
    check("small_store_spills", ok, "3 x 150 MiB through 200 MiB stores")
