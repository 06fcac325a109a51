"""A cluster that shoal.init() starts itself: its output pipe is read (a task that prints a lot
finishes), and a second driver joins it (address="auto", address=, a cluster file), as Ray's
second `ray.init(address="auto")` does. Each test runs its drivers as real processes."""
import json
import os
import stat
import subprocess
import sys
import textwrap

from conftest import ROOT, shoal_bin


def _env(**extra):
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        e.pop(k, None)
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("SHOAL_BIN", shoal_bin())
    e.update(extra)
    return e


def _driver(code, timeout=60, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=_env(**env))


def test_task_that_prints_300kb_finishes_with_observability_off(tmp_path):
    # With observability off (here through a wrapper, as an admin's /etc/shoal/shoal.toml would
    # set it) workers' lines go to the cluster process's stdout, which is init()'s pipe: before
    # the fix nothing read it after the first line, and the task blocked at 64 KiB.
    wrapper = tmp_path / "shoal"
    wrapper.write_text(f'#!/bin/sh\nexec {shoal_bin()} "$@" --observability=off\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    r = _driver("""
        import shoal as ray
        ray.init(num_cpus=1)
        @ray.remote
        def noisy():
            for i in range(300):
                print("%04d " % i + "x" * 995)
            return "done"
        print("result:", ray.get(noisy.remote(), timeout=40))
        ray.shutdown()
    """, SHOAL_BIN=str(wrapper))
    assert r.returncode == 0, r.stderr[-3000:]
    # (the driver's print and the drained lines are written by two threads: a line of one may
    # fall between the words of the other's, so the result is looked for as its own words)
    assert "result:" in r.stdout and "done" in r.stdout
    assert "\x1eshoal-task" not in r.stdout  # no task markers when no agent takes them out
    # the lines reached the driver's stdout through the drained pipe, all of them
    assert sum(1 for l in r.stdout.splitlines() if l.rstrip().endswith("x" * 50)) == 300


def test_second_driver_joins_a_cluster_init_started(tmp_path):
    # (a session directory of its own: other clusters of this user may run on this machine)
    old = os.environ.get("SHOAL_TMPDIR")
    os.environ["SHOAL_TMPDIR"] = str(tmp_path)
    try:
        _second_driver(tmp_path)
    finally:
        if old is None:
            os.environ.pop("SHOAL_TMPDIR")
        else:
            os.environ["SHOAL_TMPDIR"] = old


def _second_driver(tmp_path):
    # The first driver starts the cluster with init(), creates a named actor and waits; a
    # second driver joins with address="auto" and with the first one's address, and calls it.
    go = tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time, json
        import shoal as ray
        ctx = ray.init(num_cpus=2, namespace="joined")
        @ray.remote
        class Counter:
            def __init__(self): self.n = 0
            def inc(self): self.n += 1; return self.n
        c = Counter.options(name="counter").remote()
        assert ray.get(c.inc.remote()) == 1
        print(json.dumps({{"address": ctx["address"]}}), flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        print("final", ray.get(c.inc.remote()), flush=True)
        ray.shutdown()
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = first.stdout.readline()
        assert line, first.stderr.read()
        addr = json.loads(line)["address"]
        r = _driver("""
            import shoal as ray
            ray.init(address="auto", namespace="joined")
            print("auto", ray.get(ray.get_actor("counter").inc.remote()))
            ray.shutdown()
        """)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "auto 2" in r.stdout
        r = _driver(f"""
            import shoal as ray
            ray.init(address={addr!r}, namespace="joined")
            print("addr", ray.get(ray.get_actor("counter").inc.remote()))
        """)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "addr 3" in r.stdout
        # the record `shoal address --json` writes, used as a cluster file
        rec = subprocess.run([shoal_bin(), "address", "--json"], capture_output=True, text=True, env=_env(), timeout=30)
        assert rec.returncode == 0, rec.stderr
        cfile = tmp_path / "cluster.json"
        cfile.write_text(rec.stdout)
        cfile.chmod(0o600)
        r = _driver("""
            import shoal as ray
            ray.init(namespace="joined")
            print("file", ray.get(ray.get_actor("counter").inc.remote()))
        """, SHOAL_CLUSTER_FILE=str(cfile))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "file 4" in r.stdout
        go.write_text("")
        out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err[-3000:]
        assert "final 5" in out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_auto_without_a_cluster_says_what_to_do(tmp_path):
    r = _driver("""
        import shoal as ray
        try:
            ray.init(address="auto")
        except ConnectionError as e:
            print("refused:", e)
    """, SHOAL_TMPDIR=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "found no running shoal cluster to join" in r.stdout


def test_address_without_secret_says_what_to_do(tmp_path):
    r = _driver("""
        import shoal as ray
        try:
            ray.init(address="127.0.0.1:1")
        except ConnectionError as e:
            print("refused:", e)
    """, SHOAL_TMPDIR=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SHOAL_SECRET is not set" in r.stdout


def test_detached_actor_on_a_cluster_init_started_warns():
    r = _driver("""
        import warnings
        import shoal as ray
        ray.init(num_cpus=1)
        @ray.remote
        class A:
            def ping(self): return "pong"
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            a = A.options(name="keeper", lifetime="detached").remote()
        print(ray.get(a.ping.remote()))
        print("warned:", any("ends when this driver exits" in str(w.message) for w in got))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pong" in r.stdout and "warned: True" in r.stdout


def test_driver_over_tcp_moves_objects_larger_than_a_message_both_ways(tmp_path):
    # A driver that joins by the cluster's TCP address (as one outside the allocation does) has
    # no store to map: objects over 64 MiB travel in parts both ways (nodeagent/remote_driver.go).
    # 300 MiB is more than one message may hold (256 MiB).
    env = _env(SHOAL_TMPDIR=str(tmp_path))
    up = subprocess.run([shoal_bin(), "up", "--num-cpus", "1", "--object-store-memory", "1g", "--json"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    try:
        cfile = tmp_path / "cluster.json"
        cfile.write_text(json.dumps({"address": info["tcp"], "secret": info["secret"], "id": info["id"]}))
        r = _driver("""
            import hashlib, os
            import shoal as ray
            ctx = ray.init()
            assert ctx["address"].startswith("tcp:"), ctx
            big = os.urandom(1 << 20) * 300
            ref = ray.put(big)
            @ray.remote
            def check(b):
                return len(b), hashlib.sha256(b).hexdigest()
            @ray.remote
            def make(n):
                return os.urandom(1 << 20) * n
            print("PUT", ray.get(check.remote(ref)) == (len(big), hashlib.sha256(big).hexdigest()))
            print("BACK", ray.get(ref) == big)
            out = ray.get(make.remote(150))
            print("MADE", len(out))
            ray.shutdown()
        """, timeout=120, SHOAL_CLUSTER_FILE=str(cfile), SHOAL_TMPDIR=str(tmp_path / "elsewhere"))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "PUT True" in r.stdout and "BACK True" in r.stdout and "MADE 157286400" in r.stdout, r.stdout
    finally:
        subprocess.run([shoal_bin(), "down", "--cluster", info["id"]], env=env, timeout=60)


def test_joining_driver_that_sizes_the_cluster_is_refused(tmp_path):
    # Under `shoal run` the driver joins the cluster the command started; a size given to init()
    # there could only be ignored, so it is refused, as Ray refuses it when connecting to a
    # running cluster. Without sizes the same driver runs.
    for kw, name in (("num_cpus=3", "num_cpus"), ("resources={'x': 1}", "resources"),
                     ("object_store_memory=1 << 26", "object_store_memory")):
        r = subprocess.run([shoal_bin(), "run", "--num-cpus", "1", "--", sys.executable, "-c",
                            f"import shoal; shoal.init({kw})"],
                           capture_output=True, text=True, timeout=60, env=_env(SHOAL_TMPDIR=str(tmp_path)))
        assert r.returncode != 0, (kw, r.stdout, r.stderr[-2000:])
        assert "ValueError" in r.stderr and f"{name}=" in r.stderr and "--num-cpus" in r.stderr, r.stderr[-2000:]
    r = subprocess.run([shoal_bin(), "run", "--num-cpus", "1", "--", sys.executable, "-c",
                        "import shoal; shoal.init(); print(shoal.cluster_resources()['CPU'])"],
                       capture_output=True, text=True, timeout=60, env=_env(SHOAL_TMPDIR=str(tmp_path)))
    assert r.returncode == 0 and r.stdout.split()[-1] == "1.0", (r.stdout, r.stderr[-2000:])
