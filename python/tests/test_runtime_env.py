"""Runtime environments as Ray documents them: env_vars, working_dir, py_modules, excludes and
pip (from a local wheelhouse), per job and per task or actor, merged as Ray merges them; tasks
of different environments in different worker processes; the refused fields refused clearly.
One cluster started by init() with a job-level runtime_env, real workers."""
import base64
import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import ROOT, shoal_bin
from shoal._runtime_env import Excludes


# ---------------------------------------------------------------- the pattern matcher (no cluster)

@pytest.mark.parametrize("patterns,path,is_dir,want", [
    (["*.log"], "a.log", False, True),
    (["*.log"], "deep/down/a.log", False, True),
    (["*.log"], "a.logx", False, False),
    (["data/"], "data", True, True),
    (["data/"], "data", False, False),          # dir-only pattern, a file named data
    (["data/"], "sub/data", True, True),        # no inner slash: any depth
    (["/data"], "sub/data", True, False),       # anchored
    (["/data"], "data", False, True),
    (["sub/*.bin"], "sub/x.bin", False, True),
    (["sub/*.bin"], "other/sub/x.bin", False, False),  # an inner slash anchors
    (["**/cache"], "a/b/cache", True, True),
    (["**/cache"], "cache", True, True),
    (["logs/**"], "logs/a/b.txt", False, True),
    (["a/**/z"], "a/z", False, True),
    (["a/**/z"], "a/b/c/z", False, True),
    (["*.txt", "!keep.txt"], "keep.txt", False, False),
    (["*.txt", "!keep.txt"], "drop.txt", False, True),
    (["!keep.txt", "*.txt"], "keep.txt", False, True),  # the last match decides
    (["file?.py"], "file1.py", False, True),
    (["file[0-2].py"], "file3.py", False, False),
    (["file[!0-2].py"], "file3.py", False, True),
    (["# comment", "", "x"], "x", False, True),
    (["\\#name"], "#name", False, True),
])
def test_excludes_follow_gitignore(patterns, path, is_dir, want):
    assert Excludes(patterns).excluded(path, is_dir) is want


# ---------------------------------------------------------------- the cluster

def _wheel(where, name, version, code):
    """A pure-Python wheel written by hand (the wheelhouse of a cluster without an index)."""
    files = {f"{name}/__init__.py": code,
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: shoal-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for p, c in files.items():
        d = base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{p},sha256={d},{len(c.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(where, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, c in files.items():
            z.writestr(p, c)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = tmp_path_factory.mktemp("renv")
    wd = t / "project"
    (wd / "pkg").mkdir(parents=True)
    (wd / "pkg" / "__init__.py").write_text("NAME = 'pkg from working_dir'\n")
    (wd / "settings.txt").write_text("from the working dir\n")
    (wd / "data").mkdir()
    (wd / "data" / "big.bin").write_bytes(b"\0" * 4096)
    (wd / "notes.log").write_text("excluded\n")
    (wd / "keep.log").write_text("re-included\n")
    (wd / "build").mkdir()
    (wd / "build" / "out.o").write_text("ignored by .gitignore\n")
    (wd / ".gitignore").write_text("build/\n")
    (wd / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (wd / "run.sh").chmod(0o755)
    mods = t / "mods"
    (mods / "shipped_mod").mkdir(parents=True)
    (mods / "shipped_mod" / "__init__.py").write_text("def hello():\n    return 'hello from shipped_mod'\n")
    (mods / "single.py").write_text("WHO = 'single file module'\n")
    wheels = t / "wheels"
    wheels.mkdir()
    _wheel(str(wheels), "shoaltestpkg", "1.0", "VERSION = '1.0'\n")
    _wheel(str(t), "wheelmod", "0.1", "WHAT = 'from a py_modules wheel'\n")
    return t


@pytest.fixture(scope="module")
def ray(tree):
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        os.environ.pop(k, None)
    old_tmp = os.environ.get("SHOAL_TMPDIR")
    os.environ["SHOAL_TMPDIR"] = str(tree / "tmp")  # the cluster's sessions and its runtime_env cache
    (tree / "tmp").mkdir()
    import shoal
    shoal.init(num_cpus=2, runtime_env={"env_vars": {"JOB_VAR": "job", "BOTH": "job"}})
    yield shoal
    shoal.shutdown()
    if old_tmp is None:
        os.environ.pop("SHOAL_TMPDIR", None)
    else:
        os.environ["SHOAL_TMPDIR"] = old_tmp


def _env_of():
    import shoal

    @shoal.remote
    def env_of(*names):
        return {n: os.environ.get(n) for n in names}, os.getpid()
    return env_of


def test_env_vars_job_and_task_merged(ray):
    env_of = _env_of()
    job, pid_job = ray.get(env_of.remote("JOB_VAR", "BOTH", "TASK_VAR"))
    assert job == {"JOB_VAR": "job", "BOTH": "job", "TASK_VAR": None}
    task, pid_task = ray.get(env_of.options(runtime_env={"env_vars": {"BOTH": "task", "TASK_VAR": "t"}}).remote(
        "JOB_VAR", "BOTH", "TASK_VAR"))
    # Ray: the task's env_vars are merged into the job's, the task's value winning
    assert task == {"JOB_VAR": "job", "BOTH": "task", "TASK_VAR": "t"}
    assert pid_task != pid_job  # different environments never share a worker process
    again, _ = ray.get(env_of.remote("TASK_VAR"))
    assert again == {"TASK_VAR": None}  # the job's workers never saw the task's variables


def test_working_dir_shipped_unpacked_and_excluded(ray, tree):
    @ray.remote
    def look():
        import pkg
        files = sorted(os.path.relpath(os.path.join(d, f), ".") for d, _, fs in os.walk(".") for f in fs)
        with open("settings.txt") as f:
            settings = f.read().strip()
        return os.getcwd(), files, pkg.NAME, settings, os.access("run.sh", os.X_OK), os.environ.get("JOB_VAR")
    renv = {"working_dir": str(tree / "project"), "excludes": ["data/", "*.log", "!keep.log"]}
    cwd, files, name, settings, executable, job_var = ray.get(look.options(runtime_env=renv).remote())
    assert files == [".gitignore", "keep.log", "pkg/__init__.py", "run.sh", "settings.txt"]
    assert name == "pkg from working_dir" and settings == "from the working dir"
    assert executable, "file modes travel with the package"
    assert job_var == "job", "the job's env_vars stay under a task's working_dir"
    # unpacked in the node's cache, in the cluster's session directory (gone with the cluster)
    cache = os.path.dirname(cwd)
    assert os.path.basename(cache) == "runtime_env" and cache.startswith(str(tree / "tmp" / f"shoal-{os.geteuid()}"))
    # a second task of the same environment uses the package unpacked once on this node
    cwd2 = ray.get(look.options(runtime_env=renv).remote())[0]
    assert cwd2 == cwd
    assert len([d for d in os.listdir(cache) if d.startswith("wd-") and not d.endswith(".lock")]) == 1


def test_actor_runtime_env_and_nested_tasks_inherit(ray, tree):
    @ray.remote
    def child():
        import shipped_mod
        return shipped_mod.hello(), os.environ.get("ACTOR_VAR")

    @ray.remote
    class Holder:
        def info(self):
            import single
            return single.WHO, os.environ.get("ACTOR_VAR"), os.environ.get("JOB_VAR")

        def spawn(self):
            return ray.get(child.remote())

    renv = {"env_vars": {"ACTOR_VAR": "actor"},
            "py_modules": [str(tree / "mods" / "shipped_mod"), str(tree / "mods" / "single.py"),
                           str(tree / "wheelmod-0.1-py3-none-any.whl")]}
    h = Holder.options(runtime_env=renv).remote()
    assert ray.get(h.info.remote()) == ("single file module", "actor", "job")
    # a task the actor submits inherits the actor's environment (Ray's rule)
    assert ray.get(h.spawn.remote()) == ("hello from shipped_mod", "actor")

    @ray.remote
    def from_wheel():
        import wheelmod
        return wheelmod.WHAT
    assert ray.get(from_wheel.options(runtime_env={"py_modules": [str(tree / "wheelmod-0.1-py3-none-any.whl")]}).remote()) \
        == "from a py_modules wheel"


def test_pip_from_a_wheelhouse(ray, tree):
    @ray.remote
    def version():
        import shoaltestpkg
        return shoaltestpkg.VERSION, shoaltestpkg.__file__
    renv = {"pip": {"packages": ["shoaltestpkg==1.0"], "pip_find_links": str(tree / "wheels")}}
    v, where = ray.get(version.options(runtime_env=renv).remote())
    assert v == "1.0"
    assert "/runtime_env/pip-" in where
    # Ray's list form with its documented pip_install_options
    v2, where2 = ray.get(version.options(runtime_env={"pip": {
        "packages": ["shoaltestpkg==1.0"], "pip_install_options": ["--no-index", "--find-links", str(tree / "wheels")]}}).remote())
    assert v2 == "1.0"


def test_pip_failure_is_a_runtime_env_setup_error(ray, tree):
    @ray.remote
    def never():
        return 1
    renv = {"pip": {"packages": ["no-such-package-shoal==9.9"], "pip_find_links": str(tree / "wheels")}}
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError) as ei:
        ray.get(never.options(runtime_env=renv).remote(), timeout=120)
    assert "pip_find_links" in str(ei.value) and "no-such-package-shoal" in str(ei.value)


@pytest.mark.parametrize("renv,err,words", [
    ({"conda": {"dependencies": ["numpy"]}}, ValueError, "conda environments are not supported"),
    ({"container": {"image": "x"}}, ValueError, "containers are not supported"),
    ({"image_uri": "docker.io/x"}, ValueError, "image_uri is not supported"),
    ({"no_such_field": 1}, ValueError, "unknown field 'no_such_field'"),
    ({"env_vars": {"A": 1}}, TypeError, "Dict[str, str]"),
    ({"working_dir": "s3://bucket/pkg.zip"}, ValueError, "remote URIs are not supported"),
    ({"working_dir": "/no/such/dir/shoal"}, ValueError, "no such directory"),
    ({"pip": ["x"], "uv": ["y"]}, ValueError, "not both"),
    ({"pip": {"packages": ["x"], "pip_version": "==23.0"}}, ValueError, "pip_version"),
    ({"pip": {"packages": ["x"], "pip_find_links": "/no/such/wheelhouse"}}, ValueError, "does not exist"),
    ({"config": {"setup_timeout_seconds": 0}}, ValueError, "setup_timeout_seconds"),
])
def test_refused_with_a_clear_error(ray, renv, err, words):
    @ray.remote
    def f():
        return 1
    with pytest.raises(err) as ei:
        f.options(runtime_env=renv).remote()
    assert words in str(ei.value)


def test_size_limit_names_the_directory(ray, tree, monkeypatch):
    monkeypatch.setenv("SHOAL_RUNTIME_ENV_MAX_BYTES", "1000")

    @ray.remote
    def f():
        return 1
    with pytest.raises(ValueError) as ei:
        f.options(runtime_env={"working_dir": str(tree / "project")}).remote()
    assert str(tree / "project") in str(ei.value) and "excludes" in str(ei.value)
    # leaving the data out brings it under the limit
    assert ray.get(f.options(runtime_env={"working_dir": str(tree / "project"), "excludes": ["data/"]}).remote()) == 1


def test_excludes_fuzz_corpus_replays():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fuzz_excludes
    names = sorted(os.listdir(fuzz_excludes.CORPUS))
    assert names, "the committed corpus is empty"
    for n in names:
        with open(os.path.join(fuzz_excludes.CORPUS, n), "rb") as f:
            fuzz_excludes.one(f.read())
    with pytest.raises(ValueError, match="not a gitignore pattern"):
        Excludes(["[z-a]"])


def test_a_new_cluster_gets_the_packages_again(tree):
    # init / shutdown / init with the same working_dir, as test suites do: the second cluster
    # must not be sent object ids of the first one's packages
    code = f"""
import os, shoal as ray
for i in range(2):
    ray.init(num_cpus=1, runtime_env={{"working_dir": {str(tree / "project")!r}, "excludes": ["data/"]}})
    @ray.remote
    def read():
        return open("settings.txt").read().strip()
    print("ROUND", i, ray.get(read.remote(), timeout=60))
    ray.shutdown()
"""
    env = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("SHOAL_BIN", shoal_bin())
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ROUND 0 from the working dir" in r.stdout and "ROUND 1 from the working dir" in r.stdout
