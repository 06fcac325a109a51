"""shoal compat: the static check of a Ray script against shoal's table (shoal/_compat_table.py),
the README generated from that table, and --run with `import ray` mapped to shoal."""
import importlib
import json
import os
import subprocess
import sys
import textwrap
import types

from conftest import ROOT, shoal_bin

sys.path.insert(0, os.path.join(ROOT, "python"))
from shoal import _compat_table as T  # noqa: E402
from shoal import compat  # noqa: E402


def verdicts(src):
    return {u.key: (u.status, u.lines) for u in compat.check_source(textwrap.dedent(src))}


def test_readme_lists_the_table():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    a, b = text.find(compat.README_BEGIN), text.find(compat.README_END)
    assert a >= 0 and b > a, "README.md lost its generated compat block"
    assert text[a:b + len(compat.README_END) + 1] == compat.readme_block(), \
        "README.md's Ray API list differs from python/shoal/_compat_table.py: run `python -m shoal.compat --update-readme README.md`"


def test_table_is_well_formed():
    table = T.lookup()  # raises on a duplicate or an unknown status
    for key, (status, note) in table.items():
        if status != T.SUPPORTED:
            assert note, f"{key} is {status} without a reason or what happens instead"
        assert key.startswith("ray") or key.split(":")[0] in ("task", "actor", "method", "init"), key


def test_every_supported_name_resolves_under_the_alias():
    """A name the table calls supported is there when a script imports it through the alias."""
    compat.install_alias()
    try:
        for key, (status, _) in T.lookup().items():
            if status == T.SUPPORTED and ":" not in key:
                assert _resolves(key), f"the table says {key} is supported, but shoal has no such name"
    finally:
        for k in [k for k in sys.modules if k == "ray" or k.startswith("ray.")]:
            del sys.modules[k]
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, compat._RayAlias)]


def _resolves(key):
    """Whether key is there through the alias: the longest importable module, then attributes."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    else:
        return False
    for p in parts[i:]:
        obj = getattr(obj, p, None)
        if obj is None or isinstance(obj, types.ModuleType):
            return False  # a module the alias would not import (shoal.train is not ray.train)
    return True


def test_lacking_names_are_not_there():
    """A name the table calls lacking is not importable through the alias: when another change
    adds it, this fails until its entry is flipped (the README follows). (A refused name may
    exist: a class that raises when used, as NodeLabelSchedulingStrategy does.)"""
    compat.install_alias()
    try:
        for key, (status, note) in T.lookup().items():
            if status != T.LACKING or ":" in key or note.startswith("accepted and not applied"):
                continue
            assert not _resolves(key), \
                f"{key} now exists in shoal: flip its entry in python/shoal/_compat_table.py to supported " \
                "(or note 'accepted and not applied: ...'), then run `python -m shoal.compat --update-readme README.md`"
    finally:
        for k in [k for k in sys.modules if k == "ray" or k.startswith("ray.")]:
            del sys.modules[k]
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, compat._RayAlias)]


def test_options_agree_with_what_remote_accepts():
    """Supported and "accepted and not applied" options are ones remote() accepts; options noted
    as refused by remote() are not: a change to either side fails here until the table follows."""
    from shoal import _api
    allowed = {"task": _api._TASK_OPTS, "actor": _api._ACTOR_OPTS}
    for key, (status, note) in T.lookup().items():
        kind, _, opt = key.partition(":")
        opt = opt.split("=")[0]
        if kind not in allowed:
            continue
        if status == T.SUPPORTED or note.startswith("accepted"):
            assert opt in allowed[kind], f"{key}: the table says shoal accepts it, remote() refuses it"
        if note.startswith("refused as an invalid option keyword"):
            assert opt not in allowed[kind], \
                f"{key}: remote() accepts it now: flip its entry in python/shoal/_compat_table.py"


def test_imports_names_and_attribute_chains():
    v = verdicts("""
        import ray
        import ray.util.state as st
        from ray.util.queue import Queue, Empty
        from ray import get as fetch
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        ray.init()
        fetch(st.list_actors())
        ray.util.ActorPool([])
        ray.data.read_parquet("x")
        ray.no_such_thing()
        print(ray.__version__)
        os = None
        os.path.join("a")
    """)
    assert v["ray"] == (T.SUPPORTED, [2])
    assert v["ray.util.state"][0] == T.SUPPORTED
    assert v["ray.util.state.list_actors"] == (T.SUPPORTED, [8])
    assert v["ray.get"] == (T.SUPPORTED, [5])
    assert v["ray.util.queue.Queue"][0] == T.SUPPORTED
    assert v["ray.util.ActorPool"][0] == T.SUPPORTED
    assert v["ray.data.read_parquet"][0] == T.REFUSED  # under ray.data, which shoal refuses
    assert v["ray.no_such_thing"][0] == compat.UNKNOWN
    assert v["ray.__version__"][0] == T.SUPPORTED
    assert not any(k.startswith("os") for k in v)


def test_options_of_decorators_options_calls_and_init():
    v = verdicts("""
        import ray as r
        r.init(address="ray://head:10001", num_cpus=2, local_mode=True)

        @r.remote(num_returns="streaming", max_retries=2)
        def gen():
            yield 1

        @r.remote(max_concurrency=8, lifetime="detached", max_restarts=1)
        class Svc:
            @r.method(num_returns=2, concurrency_group="io")
            def two(self):
                return 1, 2

        h = Svc.options(name="s", get_if_exists=True).remote()
        gen.options(scheduling_strategy="SPREAD", num_cpus=1).remote()
        h.two.options(num_returns=2).remote()
        f = r.remote(lambda: 1)
    """)
    want = {
        "ray.client": T.REFUSED, "init:num_cpus": T.SUPPORTED, "init:local_mode": T.REFUSED, "init:address": T.SUPPORTED,
        "task:num_returns=streaming": T.SUPPORTED, "task:max_retries": T.SUPPORTED,
        "actor:max_concurrency": T.SUPPORTED, "actor:lifetime=detached": T.SUPPORTED, "actor:max_restarts": T.SUPPORTED,
        "method:num_returns": T.SUPPORTED, "method:concurrency_group": T.SUPPORTED,
        "actor:name": T.SUPPORTED, "actor:get_if_exists": T.SUPPORTED,
        "task:scheduling_strategy=SPREAD": T.SUPPORTED, "task:num_cpus": T.SUPPORTED,
    }
    for k, s in want.items():
        assert v[k][0] == s, (k, v.get(k))
    assert v["method:num_returns"][1] == [11, 17]
    assert v["ray.remote"][1] == [5, 9, 18]


def test_an_option_shoal_does_not_know_is_lacking():
    v = verdicts("""
        import ray
        @ray.remote(no_such_option=1)
        def f():
            pass
    """)
    assert v["task:no_such_option"][0] == compat.UNKNOWN


def write(tmp_path, name, src):
    p = tmp_path / name
    p.write_text(textwrap.dedent(src))
    return str(p)


def env():
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        e.pop(k, None)
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e["SHOAL_BIN"] = shoal_bin()
    return e


def test_cli_exit_codes_and_json(tmp_path):
    good = write(tmp_path, "good.py", """
        import ray
        ray.init()
        print(ray.get(ray.put(1)))
    """)
    bad = write(tmp_path, "bad.py", """
        import ray
        print(ray.get_tpu_ids())
    """)
    broken = write(tmp_path, "broken.py", "def (:\n")
    r = subprocess.run([shoal_bin(), "compat", good], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "4 Ray APIs: 4 supported, 0 refused, 0 lacking" in r.stdout
    r = subprocess.run([shoal_bin(), "compat", "--json", bad], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert not d["ok"] and {"api": "ray.get_tpu_ids", "status": "lacking", "note": "shoal discovers NVIDIA GPUs only", "lines": [3]} in d["apis"]
    r = subprocess.run([shoal_bin(), "compat", broken], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2 and "broken.py line 1" in r.stderr
    r = subprocess.run([shoal_bin(), "compat"], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2 and "needs a script" in r.stderr


def test_run_maps_import_ray_to_shoal(tmp_path):
    script = write(tmp_path, "job.py", """
        import sys
        import ray
        import ray.util.state
        from ray.actor import ActorHandle
        from ray.exceptions import RayTaskError
        from ray.runtime_context import get_runtime_context

        ray.init(num_cpus=2)

        @ray.remote
        class A:
            def me(self):
                return ray.get_runtime_context().current_actor

        @ray.remote
        def boom():
            raise KeyError("x")

        a = A.remote()
        assert isinstance(ray.get(a.me.remote()), ActorHandle)
        try:
            ray.get(boom.remote())
        except RayTaskError as e:
            print("CAUGHT", type(e).__name__, isinstance(e, KeyError))
        print("MODULE", ray.__name__, ray.util.state.list_actors()[0].class_name, sys.argv[1:])
        try:
            import ray.serve
        except ModuleNotFoundError as e:
            print("NOSERVE", e)
        sys.exit(7)
    """)
    r = subprocess.run([shoal_bin(), "compat", "--run", script, "--flag", "x"], capture_output=True, text=True,
                       env=env(), timeout=90)
    assert r.returncode == 7, r.stdout + r.stderr
    assert "CAUGHT RayTaskError(KeyError) True" in r.stdout
    assert "MODULE shoal A ['--flag', 'x']" in r.stdout
    assert "NOSERVE No module named 'ray.serve': shoal does not provide it (refused: Ray Serve" in r.stdout
    assert "supported  ray.init" in r.stderr  # the check goes to stderr with --run


def test_importing_a_submodule_keeps_the_function_of_its_name(tmp_path):
    # `import ray.util.placement_group` (a library does it) used to replace the function
    # shoal.util.placement_group with its module: `from ray.util import placement_group` then
    # gave a module, as did shoal's own `from shoal.util import placement_group`. As in Ray, the
    # name stays the function.
    script = write(tmp_path, "job.py", """
        import ray.util.placement_group
        import ray.util.scheduling_strategies
        from ray.util import placement_group
        from ray.util.placement_group import placement_group as again
        import shoal.util
        print("NAMES", type(placement_group).__name__, placement_group is again, type(shoal.util.placement_group).__name__,
              ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy.__name__)
    """)
    r = subprocess.run([shoal_bin(), "compat", "--run", script], capture_output=True, text=True, env=env(), timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NAMES function True function PlacementGroupSchedulingStrategy" in r.stdout, r.stdout


def test_options_of_other_libraries_are_not_rays():
    v = verdicts("""
        import ray
        from tasks import work          # a remote function defined elsewhere
        client = object()
        client.options(timeout=3, retries=2)
        work.options(num_cpus=2, max_calls=4).remote()
        self.db.options(verbose=True)
    """)
    assert "task:timeout" not in v and "task:retries" not in v and "method:verbose" not in v
    assert v["task:num_cpus"][0] == T.SUPPORTED and v["task:max_calls"][0] == T.SUPPORTED


def test_a_script_ported_to_shoal_reads_as_ray():
    v = verdicts("""
        import shoal as ray
        import shoal.train
        ray.init()
        ray.util.state.list_actors()
        ray.util.ActorPool([])
        shoal.train.report({})
    """)
    assert v["ray"][0] == T.SUPPORTED and v["ray.init"][0] == T.SUPPORTED
    assert v["ray.util.ActorPool"][0] == T.SUPPORTED and v["ray.util.state.list_actors"][0] == T.SUPPORTED
    assert not any("train" in k for k in v)  # shoal's own modules are not Ray's


def test_pytest_plugin_runs_a_ray_test_file(tmp_path):
    t = write(tmp_path, "test_user_ray.py", """
        import ray
        from ray.util.state import list_nodes

        def test_square():
            ray.init(num_cpus=1, ignore_reinit_error=True)

            @ray.remote
            def square(x):
                return x * x

            assert ray.get([square.remote(i) for i in range(3)]) == [0, 1, 4]
            assert ray.__name__ == "shoal" and len(list_nodes()) == 1
            ray.shutdown()
    """)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "shoal.compat", "-p", "no:cacheprovider", t],
                       capture_output=True, text=True, env=env(), timeout=90, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
