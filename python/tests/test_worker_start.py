"""Workers that cannot start: the task fails with the worker's stderr, after a bounded number
of attempts, instead of respawning forever (issue 13)."""
import os
import stat
import textwrap

from conftest import run_script


def test_broken_worker_interpreter_fails_the_task(tmp_path):
    count = tmp_path / "starts"
    fake = tmp_path / "brokenpython"
    # an interpreter that dies at start for workers (as a broken environment does), and is
    # never used for anything else
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo start >> {count}
        echo "ImportError: libpython3.11.so.1.0: cannot open shared object file" >&2
        exit 127
        """))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    code = textwrap.dedent(f"""
        import sys, time
        sys.executable = {str(fake)!r}
        import shoal as ray
        ray.init()

        @ray.remote
        def f():
            return 1

        t0 = time.time()
        try:
            ray.get(f.remote(), timeout=60)
        except ray.exceptions.WorkerCrashedError as e:
            print("RAISED", type(e).__name__, "after", round(time.time() - t0, 1))
            print("MSG", str(e).replace("\\n", " | "))
        else:
            print("NO ERROR")
        """)
    r = run_script(code, "--num-cpus", "2", timeout=120)
    out = r.stdout + r.stderr
    assert "RAISED WorkerCrashedError" in r.stdout, out
    assert "cannot open shared object file" in r.stdout, "the error should carry the worker's stderr: " + out
    starts = len(count.read_text().splitlines())
    # the prestarted workers plus a few attempts with backoff, not thousands
    assert 1 <= starts <= 12, f"{starts} worker starts"


def test_process_cap_names_the_flag():
    code = textwrap.dedent("""
        import shoal as ray
        ray.init()

        @ray.remote(num_cpus=0)
        class A:
            def pid(self):
                import os
                return os.getpid()

        actors = [A.remote() for _ in range(3)]
        pids = ray.get([a.pid.remote() for a in actors], timeout=60)
        print("PIDS", len(set(pids)))
        extra = A.remote()
        try:
            ray.get(extra.pid.remote(), timeout=60)
        except ray.exceptions.RayActorError as e:
            print("CAPPED", str(e).replace("\\n", " | "))
        # the capped cluster still runs work once a slot is free
        ray.kill(actors[0])

        @ray.remote(num_cpus=0)
        def f():
            return 7
        print("TASK", ray.get(f.remote(), timeout=60))
        """)
    r = run_script(code, "--num-cpus", "1", "--max-workers-per-node", "3", timeout=120)
    out = r.stdout + r.stderr
    assert "PIDS 3" in r.stdout, out
    assert "CAPPED" in r.stdout and "--max-workers-per-node" in r.stdout and "3 worker processes" in r.stdout, out
    assert "TASK 7" in r.stdout, out


def test_negative_cap_is_refused():
    r = run_script("print('ran')", "--max-workers-per-node", "-1", timeout=60)
    assert r.returncode == 2 and "--max-workers-per-node" in r.stderr and "ran" not in r.stdout, r.stdout + r.stderr
