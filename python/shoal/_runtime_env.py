"""Runtime environments (Ray's `runtime_env`): env_vars, working_dir, py_modules, excludes, pip
and uv, per job (init(runtime_env=)) and per task or actor (.options(runtime_env=)).

The driver validates a runtime_env and prepares it once: a local working_dir or py_module is
packed into a zip (files in a sorted order, fixed timestamps, so equal trees give equal bytes),
its SHA-256 names it, and it is put in the object store once per process; the prepared
environment travels in the task spec (wire field "renv", JSON) with a key (field "renvk": the
hash of everything but object ids). The core keys worker pools by that key (sched/pool.go
poolKey), so tasks whose environments differ never share a process. A worker applies the
environment before its first task: on each node a package is unpacked once, into a cache
directory named by its hash (<tmp>/shoal-<uid>/runtime_env/), under a lock; pip packages are
installed once per node into a directory named by the requirements' hash and put first on
sys.path. conda, container and image_uri are refused. docs/runtime-env.md has the decisions.
"""
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import types
import zipfile

from . import exceptions as exc

# Ray's limit on a packed working_dir or py_module; SHOAL_RUNTIME_ENV_MAX_BYTES changes it.
DEFAULT_MAX_BYTES = 500 << 20
DEFAULT_SETUP_TIMEOUT = 600

_SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes", "pip", "uv", "config")
_REFUSED = {
    "conda": "conda environments are not supported: install the packages in the cluster's Python, or list them under "
             "'pip' with a wheelhouse the nodes reach (pip_find_links)",
    "container": "containers are not supported: shoal runs workers as processes of the allocation's user; start the "
                 "cluster inside the container instead (e.g. srun --container-image, apptainer exec)",
    "image_uri": "image_uri is not supported (no container runtime): start the cluster inside the image instead",
    "java_jars": "java_jars is not supported: shoal runs Python and Go workers",
    "nsight": "nsight profiling is not supported through runtime_env: run the cluster under nsys instead",
    "mpi": "mpi runtime environments are not supported: see `shoal launch` and shoal.collective",
}

_lock = threading.Lock()
_job = None          # the job's prepared environment (init(runtime_env=)), or None
_prepared = {}       # canonical JSON of a user's runtime_env -> its prepared form
_packages = {}       # package hash -> ObjectRef (kept while this process's connection lasts)
_cache_client = None  # the connection _prepared and _packages belong to
current = None       # in a worker: the prepared environment applied to this process
_applied_key = None
_apply_error = None


RuntimeEnvSetupError = exc.RuntimeEnvSetupError


# ---------------------------------------------------------------- gitignore-style patterns

def _compile_pattern(line):
    """(regex, negate, dir_only) for one gitignore line, or None for blanks and comments."""
    p = line.rstrip("\n")
    if not p.strip() or p.startswith("#"):
        return None
    while p.endswith(" ") and not p.endswith("\\ "):
        p = p[:-1]
    neg = p.startswith("!")
    if neg:
        p = p[1:]
    if p.startswith("\\"):
        p = p[1:]
    dir_only = p.endswith("/")
    p = p.rstrip("/")
    if not p:
        return None
    anchored = "/" in p
    p = p.lstrip("/")
    out, i = [], 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("/**", i) and i + 3 == len(p):
            out.append("/.*")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[":
            j = p.find("]", i + 2)
            if j < 0:
                out.append(re.escape("["))
                i += 1
                continue
            cls = p[i + 1:j]
            if cls.startswith("!"):
                cls = "^" + cls[1:]
            out.append("[" + cls.replace("\\", "\\\\") + "]")
            i = j + 1
        elif p[i] == "\\" and i + 1 < len(p):
            out.append(re.escape(p[i + 1]))
            i += 2
        else:
            out.append(re.escape(p[i]))
            i += 1
    rx = ("^" if anchored else "^(?:.*/)?") + "".join(out) + "$"
    try:
        return re.compile(rx), neg, dir_only
    except re.error as e:
        raise ValueError(f"runtime_env excludes pattern {line!r} is not a gitignore pattern ({e}); "
                         "fix or remove it (a bracket range must go upwards, e.g. [a-z])") from None


class Excludes:
    """gitignore-style patterns (Ray's `excludes`): the last pattern that matches a path
    decides; a leading "!" re-includes; a trailing "/" matches directories only; a pattern with
    a "/" other than a trailing one is anchored to the packed directory; "**" spans
    directories. A directory that is excluded is not entered (as in git)."""

    def __init__(self, patterns):
        self.rules = [r for r in (_compile_pattern(p) for p in patterns) if r is not None]

    def excluded(self, rel, is_dir):
        out = False
        for rx, neg, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if rx.match(rel):
                out = not neg
        return out


# ---------------------------------------------------------------- packing (driver)

def _max_bytes():
    v = os.environ.get("SHOAL_RUNTIME_ENV_MAX_BYTES")
    if not v:
        return DEFAULT_MAX_BYTES
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"SHOAL_RUNTIME_ENV_MAX_BYTES={v!r}: give a number of bytes") from None


def _files(root, excludes, what):
    """Sorted (relative posix path, absolute path, is_dir) of what a packed root holds."""
    rules = list(excludes or [])
    gi = os.path.join(root, ".gitignore")
    if os.path.isfile(gi):
        with open(gi, encoding="utf-8", errors="replace") as f:
            rules = f.read().splitlines() + rules  # the user's excludes come last and win
    ex = Excludes(rules)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = os.path.relpath(dirpath, root)
        reldir = "" if reldir == "." else reldir.replace(os.sep, "/")
        keep = []
        for d in sorted(dirnames):
            rel = f"{reldir}/{d}" if reldir else d
            full = os.path.join(dirpath, d)
            if ex.excluded(rel, True) or os.path.islink(full):
                continue
            keep.append(d)
            out.append((rel, full, True))
        dirnames[:] = keep
        for fn in sorted(filenames):
            rel = f"{reldir}/{fn}" if reldir else fn
            full = os.path.join(dirpath, fn)
            if ex.excluded(rel, False):
                continue
            if not os.path.isfile(full):
                continue  # sockets, fifos, broken links
            out.append((rel, full, False))
    out.sort()
    return out


def pack(path, excludes=(), prefix="", what="working_dir"):
    """Zip bytes of a directory (or one file) for shipping, and their SHA-256 (hex).
    prefix puts the content under a top directory (py_modules: the module's own name)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        entries = _files(path, excludes, what)
    elif os.path.isfile(path):
        entries = [(os.path.basename(path), path, False)]
    else:
        raise ValueError(f"runtime_env {what} {path!r} does not exist: give a local directory (or, for py_modules, "
                         "a .py file or .whl)")
    limit = _max_bytes()
    total = 0
    for _, full, is_dir in entries:
        if not is_dir:
            total += os.path.getsize(full)
            if total > limit:
                raise ValueError(
                    f"runtime_env {what} {path!r} holds more than {limit} bytes (the limit; "
                    f"SHOAL_RUNTIME_ENV_MAX_BYTES changes it): leave out data and build outputs with "
                    f"runtime_env['excludes'] (gitignore patterns, e.g. ['data/', '*.ckpt']), or read large files "
                    f"from a shared file system")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for rel, full, is_dir in entries:
            name = (prefix + "/" + rel) if prefix else rel
            if is_dir:
                zi = zipfile.ZipInfo(name + "/", (1980, 1, 1, 0, 0, 0))
                zi.external_attr = (stat.S_IFDIR | 0o755) << 16
                z.writestr(zi, b"")
                continue
            zi = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            mode = os.stat(full).st_mode & 0o777
            zi.external_attr = (stat.S_IFREG | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                z.writestr(zi, f.read())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _ship(data, digest):
    """The object id (hex) of a package in the object store, put once per process."""
    from . import _api
    with _lock:
        ref = _packages.get(digest)
    if ref is None:
        ref = _api.put(data)
        with _lock:
            _packages.setdefault(digest, ref)
            ref = _packages[digest]
    return ref


# ---------------------------------------------------------------- validation and preparing

def _check_str_list(v, what):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise TypeError(f"runtime_env['{what}'] must be a list of strings, got {v!r}")
    return list(v)


def _remote_uri(s):
    return isinstance(s, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", s) is not None


def _pip_spec(v, what):
    """The pip (or uv) field in Ray's forms: a list of requirements, a requirements.txt path,
    or {"packages": ..., "pip_install_options"/"uv_pip_install_options": [...], "pip_check":
    False}; shoal adds "pip_find_links" (a wheelhouse directory, or a list) and "no_index"."""
    opts = {}
    if isinstance(v, str):
        v = {"packages": v}
    if isinstance(v, (list, tuple)):
        v = {"packages": list(v)}
    if not isinstance(v, dict):
        raise TypeError(f"runtime_env['{what}'] must be a list of requirements, a requirements.txt path or a dict, got {v!r}")
    known = {"packages", "pip_check", "pip_version", "pip_install_options", "uv_version", "uv_check",
             "uv_pip_install_options", "pip_find_links", "no_index"}
    for k in v:
        if k not in known:
            raise ValueError(f"runtime_env['{what}'] has an unknown field {k!r}; known: {sorted(known)}")
    pk = v.get("packages")
    if isinstance(pk, str):
        if not os.path.isfile(pk):
            raise ValueError(f"runtime_env['{what}']: {pk!r} is neither a list of requirements nor a requirements file")
        with open(pk) as f:
            pk = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    pk = _check_str_list(pk or [], what + "'][packages")
    for k in ("pip_version", "uv_version"):
        if v.get(k):
            raise ValueError(f"runtime_env['{what}']['{k}'] is not supported: shoal installs with the nodes' own pip "
                             "into a cached directory, not a new virtualenv; leave it out")
    for k in ("pip_check", "uv_check"):
        if v.get(k):
            raise ValueError(f"runtime_env['{what}']['{k}']=True is not supported: the packages are installed next to "
                             "the cluster's Python, whose own packages pip check would judge; leave it out")
    install = _check_str_list(v.get("pip_install_options") or v.get("uv_pip_install_options") or [], what + "'][pip_install_options")
    links = v.get("pip_find_links") or []
    links = [os.path.abspath(os.path.expanduser(x)) for x in _check_str_list(links, what + "'][pip_find_links")]
    for d in links:
        if not os.path.exists(d):
            raise ValueError(f"runtime_env['{what}']['pip_find_links']: {d} does not exist on this machine; give a "
                             "wheelhouse directory every node reaches (a shared file system)")
    opts["packages"] = pk
    opts["options"] = install
    opts["find_links"] = links
    opts["no_index"] = bool(v.get("no_index", bool(links)))
    opts["tool"] = what
    return opts


def _module_path(m):
    if isinstance(m, types.ModuleType):
        f = getattr(m, "__file__", None)
        if not f:
            raise ValueError(f"runtime_env['py_modules']: module {m.__name__} has no file to ship")
        if os.path.basename(f) == "__init__.py":
            return os.path.dirname(f)
        return f
    if not isinstance(m, str):
        raise TypeError(f"runtime_env['py_modules'] entries must be paths or modules, got {m!r}")
    return m


def _same_connection():
    """Forget prepared environments and shipped packages of an earlier connection: after
    shutdown() and a new init(), their objects are in a cluster that is gone."""
    global _cache_client
    from . import _client as C
    with _lock:
        if _cache_client is not C._client:
            _prepared.clear()
            _packages.clear()
            _cache_client = C._client


def prepare(renv):
    """Validate a user's runtime_env and return its prepared form (packages shipped), cached
    per connection by the runtime_env's value."""
    if renv is None:
        return None
    _same_connection()
    if not isinstance(renv, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(renv).__name__}")
    try:
        ck = json.dumps(renv, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        ck = None
    if ck is not None:
        with _lock:
            got = _prepared.get(ck)
        if got is not None:
            return got
    for k in renv:
        if k in _REFUSED:
            raise ValueError(f"runtime_env['{k}']: {_REFUSED[k]}")
        if k not in _SUPPORTED:
            raise ValueError(f"runtime_env has an unknown field {k!r}; shoal supports {list(_SUPPORTED)} "
                             f"(and refuses {sorted(_REFUSED)})")
    out = {}
    ev = renv.get("env_vars")
    if ev is not None:
        if not isinstance(ev, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in ev.items()):
            raise TypeError("runtime_env['env_vars'] must be of type Dict[str, str], got " + repr(ev))
        out["env_vars"] = dict(ev)
    excludes = _check_str_list(renv.get("excludes") or [], "excludes")
    wd = renv.get("working_dir")
    if wd is not None:
        if not isinstance(wd, str):
            raise TypeError(f"runtime_env['working_dir'] must be a path, got {wd!r}")
        if _remote_uri(wd):
            raise ValueError(f"runtime_env['working_dir']={wd!r}: remote URIs are not supported (the nodes may reach "
                             "nothing outside the allocation); give a local directory, which shoal ships to every node")
        p = os.path.abspath(os.path.expanduser(wd))
        if os.path.isfile(p) and p.endswith(".zip"):
            with open(p, "rb") as f:
                data = f.read()
            digest = hashlib.sha256(data).hexdigest()
        elif os.path.isdir(p):
            data, digest = pack(p, excludes, what="working_dir")
        else:
            raise ValueError(f"runtime_env['working_dir']={wd!r}: no such directory (or .zip file) on this machine")
        ref = _ship(data, digest)
        out["working_dir"] = {"hash": digest, "obj": ref.hex(), "size": len(data)}
    pm = renv.get("py_modules")
    if pm is not None:
        if not isinstance(pm, (list, tuple)):
            raise TypeError(f"runtime_env['py_modules'] must be a list, got {pm!r}")
        mods = []
        for m in pm:
            path = _module_path(m)
            if _remote_uri(path):
                raise ValueError(f"runtime_env['py_modules'] entry {path!r}: remote URIs are not supported; give a local "
                                 "directory, .py file or .whl")
            p = os.path.abspath(os.path.expanduser(path))
            if p.endswith(".whl") and os.path.isfile(p):
                with open(p, "rb") as f:
                    data = f.read()
                digest = hashlib.sha256(data).hexdigest()
            elif os.path.isdir(p):
                data, digest = pack(p, excludes, prefix=os.path.basename(p.rstrip("/")), what="py_modules entry")
            elif os.path.isfile(p) and p.endswith(".py"):
                data, digest = pack(p, (), what="py_modules entry")
            else:
                raise ValueError(f"runtime_env['py_modules'] entry {path!r}: want a local directory, .py file or .whl")
            ref = _ship(data, digest)
            mods.append({"hash": digest, "obj": ref.hex(), "size": len(data)})
        out["py_modules"] = mods
    if renv.get("pip") is not None and renv.get("uv") is not None:
        raise ValueError("runtime_env: give 'pip' or 'uv', not both (Ray refuses both too)")
    for tool in ("pip", "uv"):
        if renv.get(tool) is not None:
            spec = _pip_spec(renv[tool], tool)
            if spec["packages"]:
                spec["hash"] = hashlib.sha256(json.dumps([spec["packages"], spec["options"], spec["find_links"],
                                                          spec["no_index"], sys.version_info[:2]]).encode()).hexdigest()
                out["pip"] = spec
    cfg = renv.get("config")
    if cfg is not None:
        if not isinstance(cfg, dict):
            raise TypeError(f"runtime_env['config'] must be a dict, got {cfg!r}")
        for k in cfg:
            if k not in ("setup_timeout_seconds", "eager_install"):
                raise ValueError(f"runtime_env['config'] has an unknown field {k!r}; known: setup_timeout_seconds, eager_install")
        t = cfg.get("setup_timeout_seconds")
        if t is not None:
            if not isinstance(t, int) or (t <= 0 and t != -1):
                raise ValueError(f"runtime_env['config']['setup_timeout_seconds'] must be a positive int or -1, got {t!r}")
            out["setup_timeout"] = t
    if ck is not None:
        with _lock:
            _prepared[ck] = out
    return out


def merge(parent, child):
    """Ray's rule: the child's fields replace the parent's, except env_vars, which are merged
    (the child's value wins for a variable both set)."""
    if not parent:
        return child
    if child is None:
        return parent
    out = dict(parent)
    for k, v in child.items():
        if k == "env_vars":
            out[k] = {**parent.get("env_vars", {}), **v}
        else:
            out[k] = v
    return out


def key_of(prepared):
    """The environment's key: the hash of what it holds (object ids left out)."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "obj"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return hashlib.sha256(json.dumps(strip(prepared), sort_keys=True).encode()).hexdigest()[:32]


def set_job(renv):
    """init(runtime_env=): the job's environment, the parent of every task's and actor's."""
    global _job
    _job = prepare(renv) if renv else None


def resolve(renv):
    """The prepared runtime environment of a task or actor creation: the parent's (this
    worker's, or the job's) merged with renv (its .options(runtime_env=)). Raises on a bad
    runtime_env: call it before anything of the submission is recorded."""
    parent = current if current is not None else _job
    return merge(parent, prepare(renv)) if renv is not None else parent


def attach(spec, env):
    """Put a resolved runtime environment into a task spec."""
    if not env:
        return
    spec["renv"] = json.dumps(env, sort_keys=True).encode()
    spec["renvk"] = key_of(env)
    objs = [bytes.fromhex(p["obj"]) for p in ([env["working_dir"]] if "working_dir" in env else []) + env.get("py_modules", [])]
    if objs:
        spec["refs"] = list(spec.get("refs") or []) + objs  # pinned while the task is in flight


def runtime_env_dict():
    """The prepared environment of this process (for get_runtime_context)."""
    return current if current is not None else _job


# ---------------------------------------------------------------- applying (worker)

def _cache_root():
    root = os.environ.get("SHOAL_RUNTIME_ENV_DIR")
    if not root:
        tmp = os.environ.get("SHOAL_TMPDIR") or tempfile.gettempdir()
        root = os.path.join(tmp, f"shoal-{os.geteuid()}", "runtime_env")
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.stat(root)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeEnvSetupError(f"the runtime_env cache {root} belongs to another user or others may write it; "
                                   "remove it, or set SHOAL_RUNTIME_ENV_DIR to a private directory")
    return root


class _Locked:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _fetch(obj_hex):
    from . import _api
    from . import _client as C
    ref = C.ObjectRef(bytes.fromhex(obj_hex))
    data = _api.get(ref)
    return bytes(data)


def _once(name, build):
    """The directory `name` in this node's cache, made once: under a lock, build(tmp) fills a
    fresh temporary directory, which is then renamed into place; a failed build leaves
    nothing."""
    root = _cache_root()
    d = os.path.join(root, name)
    if os.path.isdir(d):
        return d
    with _Locked(d + ".lock"):
        if os.path.isdir(d):
            return d
        tmp = tempfile.mkdtemp(prefix=f".{name[:40]}-", dir=root)
        try:
            build(tmp)
            os.rename(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return d


def _unpacked(pkg, kind):
    """The directory that holds package pkg on this node: unpacked once, by its hash."""
    def unpack(tmp):
        data = _fetch(pkg["obj"])
        if hashlib.sha256(data).hexdigest() != pkg["hash"]:
            raise RuntimeEnvSetupError(f"runtime_env package {pkg['hash'][:12]} arrived with other bytes than were packed")
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for zi in z.infolist():
                name = zi.filename
                if name.startswith("/") or ".." in name.split("/"):
                    raise RuntimeEnvSetupError(f"runtime_env package {pkg['hash'][:12]} holds an unsafe path {name!r}")
                if (zi.external_attr >> 16) & 0o170000 == stat.S_IFLNK:
                    continue  # never links out of the cache
                z.extract(zi, tmp)
                mode = (zi.external_attr >> 16) & 0o777
                if mode and not name.endswith("/"):
                    os.chmod(os.path.join(tmp, name), mode | 0o600)
    return _once(f"{kind}-{pkg['hash']}", unpack)


def _pip_installed(spec, timeout):
    def install(tmp):
        cmd = [sys.executable, "-m", "pip", "install", "--target", tmp, "--disable-pip-version-check", "--no-input"]
        if spec["no_index"]:
            cmd.append("--no-index")
        for fl in spec["find_links"]:
            cmd += ["--find-links", fl]
        cmd += spec["options"] + spec["packages"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=None if timeout == -1 else timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeEnvSetupError(f"runtime_env['{spec['tool']}']: installing {spec['packages']} took longer than "
                                       f"{timeout}s (runtime_env['config']['setup_timeout_seconds'])") from None
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip()[-2000:]
            hint = ("the node may not reach a package index: give a wheelhouse directory every node reaches with "
                    "pip_find_links (e.g. runtime_env={'pip': {'packages': [...], 'pip_find_links': '/shared/wheels'}}), "
                    "or install the packages in the cluster's Python")
            raise RuntimeEnvSetupError(f"runtime_env['{spec['tool']}']: pip could not install {spec['packages']} on "
                                       f"node {os.environ.get('SHOAL_NODE_ID', '?')}: {hint}. pip said:\n{tail}")
    return _once(f"pip-{spec['hash']}", install)


def apply(spec):
    """Set up the runtime environment of a task spec in this worker (once per process; the
    core gives a worker only tasks of its environment's key)."""
    global current, _applied_key, _apply_error
    key = spec.get("renvk") or None
    if key == _applied_key:
        if _apply_error is not None:
            raise _apply_error
        return
    if _applied_key is not None:
        raise exc.RaySystemError(f"a worker set up for runtime_env {_applied_key} was sent a task of runtime_env {key}")
    _applied_key = key
    env = json.loads(bytes(spec["renv"]))
    try:
        timeout = env.get("setup_timeout", DEFAULT_SETUP_TIMEOUT)
        paths = []
        if "pip" in env:
            paths.append(_pip_installed(env["pip"], timeout))
        for m in env.get("py_modules", []):
            paths.append(_unpacked(m, "mod"))
        wd = None
        if "working_dir" in env:
            wd = _unpacked(env["working_dir"], "wd")
            paths.insert(0, wd)
        os.environ.update(env.get("env_vars", {}))
        for p in reversed(paths):
            if p not in sys.path:
                sys.path.insert(0, p)
        if paths:
            os.environ["PYTHONPATH"] = os.pathsep.join(paths + [x for x in [os.environ.get("PYTHONPATH")] if x])
        if wd:
            os.chdir(wd)
    except RuntimeEnvSetupError as e:
        _apply_error = e
        raise
    except Exception as e:  # noqa: BLE001 - any failure to set up is the environment's error
        _apply_error = RuntimeEnvSetupError(f"setting up the runtime_env failed: {type(e).__name__}: {e}")
        raise _apply_error from e
    current = env
