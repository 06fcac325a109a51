"""`shoal compat SCRIPT.py` (and ``python -m shoal.compat``): which Ray APIs a script uses, and
for each whether shoal supports it, refuses it (and why) or lacks it; ``--run`` then runs the
script with ``import ray`` mapped to shoal.

The check is static (the script is parsed, not run): imports of ray and its modules, attribute
chains on them (``ray.util.state.list_actors``), the options of @ray.remote and @ray.method,
of ``.options(...)`` and of ``ray.init(...)``, each looked up in shoal/_compat_table.py, the one
table README.md's Python section is generated from (docs/ray-introspection.md).

Exit status: 0 when every API found is supported, 1 when one is lacking or refused (the script
would fail, or behave differently, on shoal), 2 for a script that cannot be read or parsed;
with --run, the script's own exit status. As a pytest plugin (``pytest -p shoal.compat``) it
maps `import ray` to shoal in the tests it runs."""
import argparse
import ast
import importlib
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import types

from . import _compat_table as T

UNKNOWN = "unknown"


# ---------------------------------------------------------------- the static check

class Use:
    """One Ray API a script uses: its table key, the lines it is on, and the verdict."""

    def __init__(self, key):
        self.key = key
        self.lines = []
        self.status = None
        self.note = ""

    def as_dict(self):
        return {"api": self.key, "status": self.status, "note": self.note, "lines": self.lines}


def _const(v):
    if isinstance(v, ast.Constant) and isinstance(v.value, (str, int, bool)):
        return v.value
    return None


def _as_ray(module):
    """The Ray module path a module import stands for (ray.X, or shoal.X read as ray.X), or None."""
    for root in ("ray", "shoal"):
        if module == root or module.startswith(root + "."):
            return "ray" + module[len(root):]
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self):
        self.names = {}      # a local name -> the ray path it stands for ("ray", "ray.util.state" ...)
        self.funcs = set()   # names of remote functions (decorated or made by ray.remote(f))
        self.classes = set()  # names of actor classes
        self.uses = {}       # key -> Use

    def add(self, key, line):
        u = self.uses.get(key)
        if u is None:
            u = self.uses[key] = Use(key)
        if line not in u.lines:
            u.lines.append(line)

    # ---- names (a script already ported with `import shoal as ray` is read as Ray's; shoal's
    # own modules imported otherwise, shoal.train or shoal.collective, are not Ray's)
    def visit_Import(self, node):
        for a in node.names:
            name = _as_ray(a.name) if (a.name.startswith("ray") or a.asname == "ray") else None
            if name is not None:
                self.add(name, node.lineno)
                if a.asname:
                    self.names[a.asname] = name
                else:
                    self.names[a.name.split(".")[0]] = "ray"

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if node.level or not (mod == "ray" or mod.startswith("ray.")):
            return
        for a in node.names:
            if a.name == "*":
                self.add(mod, node.lineno)
                continue
            full = f"{mod}.{a.name}"
            self.add(full, node.lineno)
            self.names[a.asname or a.name] = full

    def resolve(self, node):
        """The ray path an expression names (ray.util.state.list_actors), or None."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.names:
            return ".".join([self.names[node.id]] + parts[::-1])
        return None

    def visit_Attribute(self, node):
        path = self.resolve(node)
        if path is not None:
            self.add(path, node.lineno)
            return  # the longest chain only: not its prefixes
        self.generic_visit(node)

    # ---- remote functions and actor classes, and their options
    def _remote_options(self, deco, kind, line):
        """deco is @ray.remote or @ray.remote(...) (or ray.method): record it and its keywords."""
        if isinstance(deco, ast.Call):
            target = self.resolve(deco.func)
            for kw in deco.keywords:
                if kw.arg:
                    self.option(kind, kw.arg, kw.value, line)
            for a in deco.args:
                self.visit(a)
        else:
            target = self.resolve(deco)
        return target

    def option(self, kind, name, value, line):
        v = _const(value)
        if isinstance(v, str):
            key = f"{kind}:{name}={v}"
            if key in T.lookup():
                self.add(key, line)
                self.visit(value)
                return
        self.add(f"{kind}:{name}", line)
        self.visit(value)

    def _decorated(self, node, kind):
        for d in node.decorator_list:
            f = d.func if isinstance(d, ast.Call) else d
            path = self.resolve(f)
            if path == "ray.remote":
                self.add("ray.remote", d.lineno)
                self._remote_options(d, kind, d.lineno)
                (self.classes if kind == "actor" else self.funcs).add(node.name)
            elif path == "ray.method":
                self.add("ray.method", d.lineno)
                self._remote_options(d, "method", d.lineno)
            else:
                self.visit(d)

    def visit_FunctionDef(self, node):
        self._decorated(node, "task")
        for x in node.body + node.args.defaults + node.args.kw_defaults:
            if x is not None:
                self.visit(x)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._decorated(node, "actor")
        for x in node.bases + node.keywords + node.body:
            self.visit(x)

    def visit_Assign(self, node):
        # f = ray.remote(g) / A = ray.remote(num_cpus=1)(B): remember what the name is
        v = node.value
        if isinstance(v, ast.Call):
            inner = v.func if isinstance(v.func, ast.Call) else v
            if self.resolve(inner.func) == "ray.remote":
                arg = (v.args or [None])[0]
                kind = "actor" if isinstance(arg, ast.Name) and arg.id[:1].isupper() else "task"
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        (self.classes if kind == "actor" else self.funcs).add(t.id)
        self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        path = self.resolve(f)
        if path == "ray.init":
            self.add("ray.init", node.lineno)
            addr = _const(node.args[0]) if node.args else None
            for kw in node.keywords:
                if kw.arg == "address":
                    addr = _const(kw.value)
                if kw.arg:
                    self.option("init", kw.arg, kw.value, node.lineno)
            if isinstance(addr, str) and addr.startswith("ray://"):
                self.add("ray.client", node.lineno)
            for a in node.args:
                self.visit(a)
            return
        if path == "ray.remote" and node.keywords:
            self.add("ray.remote", node.lineno)
            for kw in node.keywords:
                if kw.arg:
                    self.option("task", kw.arg, kw.value, node.lineno)
            for a in node.args:
                self.visit(a)
            return
        if isinstance(f, ast.Attribute) and f.attr == "options" and path is None and self.names:
            kind = self._options_kind(f.value)
            if kind is not None:
                table = T.lookup()
                for kw in node.keywords:
                    # on a receiver not known to be a remote function or actor class (imported
                    # from elsewhere, or an actor method), only Ray's option names count: another
                    # library's .options(timeout=...) is not Ray's
                    if kw.arg and (kind in ("task", "actor") or
                                   any(f"{k}:{kw.arg}" in table for k in ("task", "actor", "method"))):
                        k = kind
                        if kind == "any":
                            k = "task" if f"task:{kw.arg}" in T.lookup() else "actor"
                        self.option(k, kw.arg, kw.value, node.lineno)
                self.visit(f.value)
                for a in node.args:
                    self.visit(a)
                return
        self.generic_visit(node)

    def _options_kind(self, recv):
        if isinstance(recv, ast.Name):
            if recv.id in self.funcs:
                return "task"
            if recv.id in self.classes:
                return "actor"
            return "any"
        if isinstance(recv, ast.Attribute) and not isinstance(recv.value, ast.Call):
            return "method"  # handle.method.options(...)
        return None


def _verdict(key, table):
    """(status, note) of a key: itself, else the nearest listed module above it that shoal
    refuses or lacks; a name under a supported module that the table does not list is unknown."""
    if key in table:
        return table[key]
    if ":" not in key and key.rsplit(".", 1)[-1].startswith("__"):
        return T.SUPPORTED, ""  # ray.__version__, ray.__name__: every module has them
    if ":" in key:
        kind, opt = key.split(":", 1)
        base = opt.split("=", 1)[0]
        if f"{kind}:{base}" in table and "=" in opt:
            return table[f"{kind}:{base}"]
        return UNKNOWN, f"not an option shoal knows for {kind}s"
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        p = ".".join(parts[:i])
        if p in table and table[p][0] != T.SUPPORTED:
            return table[p]
    return UNKNOWN, "not in shoal's table of Ray APIs: shoal lacks it"


def check_source(src, filename="<script>"):
    """The Ray APIs src uses, with shoal's verdict, in order of first use. Raises SyntaxError."""
    tree = ast.parse(src, filename)
    f = _Finder()
    f.visit(tree)
    table = T.lookup()
    out = sorted(f.uses.values(), key=lambda u: (u.lines[0], u.key))
    for u in out:
        u.status, u.note = _verdict(u.key, table)
    return out


def failed(uses):
    """Whether any use would fail or differ on shoal (lacking, refused or unknown)."""
    return any(u.status != T.SUPPORTED for u in uses)


def report(uses, filename, out):
    if not uses:
        out.write(f"{filename}: uses no Ray API\n")
        return
    width = max(len(u.key) for u in uses)
    for u in uses:
        lines = ",".join(str(n) for n in u.lines[:5]) + ("..." if len(u.lines) > 5 else "")
        status = T.LACKING if u.status == UNKNOWN else u.status
        out.write(f"{status:<9}  {u.key:<{width}}  line {lines}{': ' + u.note if u.note else ''}\n")
    n = {s: sum(1 for u in uses if (T.LACKING if u.status == UNKNOWN else u.status) == s) for s in (T.SUPPORTED, T.REFUSED, T.LACKING)}
    out.write(f"{filename}: {len(uses)} Ray APIs: {n[T.SUPPORTED]} supported, {n[T.REFUSED]} refused, {n[T.LACKING]} lacking\n")


# ---------------------------------------------------------------- import ray as shoal

class _RayAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Maps `import ray` and `import ray.X` to shoal's modules (shoal.X, or the table's MODULES);
    a Ray module shoal does not provide raises ModuleNotFoundError saying so."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        name = spec.name
        target = T.MODULES.get(name, "shoal" + name[3:])
        mod = None
        status, _ = _verdict(name, T.lookup())
        if status in (T.REFUSED, T.LACKING):
            target = None  # shoal.train is not ray.train: a module the table does not support is not mapped
        if target is not None:
            try:
                mod = importlib.import_module(target)
            except ModuleNotFoundError as e:
                if e.name != target and not target.startswith((e.name or "") + "."):
                    raise
                mod = _synthesized(name)
        if mod is None:
            status, note = _verdict(name, T.lookup())
            raise ModuleNotFoundError(f"No module named {name!r}: shoal does not provide it ({status}: {note})", name=name)
        if target is not None:
            _alias_children(name, target)
        return mod

    def exec_module(self, module):
        pass


def _alias_children(name, target):
    """Enter the submodules of target that are loaded already into sys.modules under ray's
    name. The import system sets a module it loads as an attribute of its parent, which here
    is shoal's own package: `import ray.util.placement_group` would replace the function
    shoal.util.placement_group with its module (for `from ray.util import placement_group`
    too). A name already in sys.modules is not loaded again, so nothing is replaced, as in
    Ray, whose ray.util imports that module before it binds the function."""
    pre = target + "."
    for k, m in list(sys.modules.items()):
        if not k.startswith(pre) or "." in k[len(pre):] or m is None:
            continue
        rn = name + "." + k[len(pre):]
        if rn in sys.modules or T.MODULES.get(rn, "shoal" + rn[3:]) != k:
            continue
        if _verdict(rn, T.lookup())[0] in (T.REFUSED, T.LACKING):
            continue
        sys.modules[rn] = m
        _alias_children(rn, k)  # (not loaded through this finder: its children are not either)


def _synthesized(name):
    """Ray modules shoal keeps under other names."""
    if name == "ray.actor":
        from . import _api
        m = types.ModuleType("ray.actor")
        m.ActorClass, m.ActorHandle, m.ActorMethod = _api.ActorClass, _api.ActorHandle, _api.ActorMethod
        return m
    return None


def install_alias():
    """Make `import ray` (and its modules) import shoal in this process."""
    for f in sys.meta_path:
        if isinstance(f, _RayAlias):
            return
    for k in [k for k in sys.modules if k == "ray" or k.startswith("ray.")]:
        del sys.modules[k]
    sys.meta_path.insert(0, _RayAlias())


def run_script(path, args):
    """Run path as __main__ with `import ray` mapped to shoal; returns its exit status."""
    install_alias()
    sys.argv = [path] + list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        sys.stderr.write(f"{e.code}\n")
        return 1
    return 0


def pytest_configure(config):
    """As a pytest plugin (``pytest -p shoal.compat tests/``), test files that `import ray` import
    shoal: a user's Ray test suite runs against shoal unchanged."""
    install_alias()


# ---------------------------------------------------------------- README

README_BEGIN = "<!-- compat-table: generated from python/shoal/_compat_table.py by `python -m shoal.compat --update-readme`; test_compat.py keeps them equal -->"
README_END = "<!-- /compat-table -->"


def _wrap(words, width=100):
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines


def readme_block():
    """The README's list of what is supported, refused (with the reason) and lacking."""
    rows = T.TABLE
    sup = (", ".join(f"`{k}`" for k, s, _ in rows if s == T.SUPPORTED) + ".").split(" ")
    lack = [(k, n) for k, s, n in rows if s == T.LACKING]
    out = [README_BEGIN,
           "Keys: `ray.X` is an API; `task:`, `actor:`, `method:` and `init:` are keyword options of",
           "`@ray.remote`/`.options()` on functions, on classes, of `@ray.method`, and of `ray.init()`.",
           "`shoal compat SCRIPT.py` checks a script against this list.", "",
           "**Supported:**"]
    out += _wrap(sup)
    out += ["", "**Refused, with the reason:**", ""]
    out += [f"- `{k}`: {n}" for k, s, n in rows if s == T.REFUSED]
    out += ["", "**Not yet in shoal**, by what happens instead:", ""]
    groups = {}
    for k, n in lack:
        groups.setdefault(n, []).append(f"`{k}`")
    for n, keys in groups.items():
        lines = _wrap(f"- {n}: {', '.join(keys)}".split(" "), 98)
        out += [lines[0]] + ["  " + line for line in lines[1:]]
    out.append(README_END)
    return "\n".join(out) + "\n"


def update_readme(path):
    with open(path) as f:
        text = f.read()
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        raise SystemExit(f"{path}: no {README_BEGIN!r} ... {README_END!r} block to update")
    b += len(README_END) + 1
    with open(path, "w") as f:
        f.write(text[:a] + readme_block() + text[b:])


# ---------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(prog="shoal compat", description="List the Ray APIs a script uses and whether shoal supports them; "
                                "--run then runs it with `import ray` mapped to shoal.",
                                epilog="Example: shoal compat train.py   then   shoal compat --run train.py --epochs 3")
    p.add_argument("--run", action="store_true", help="after the check, run the script with import ray mapped to shoal")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    p.add_argument("--quiet", action="store_true", help="with --run: print the check only when something is not supported")
    p.add_argument("--update-readme", metavar="README", help=argparse.SUPPRESS)
    p.add_argument("script", nargs="?")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.update_readme:
        update_readme(a.update_readme)
        return 0
    if not a.script:
        p.error("name the script to check, e.g. shoal compat train.py")
    try:
        with open(a.script, encoding="utf-8") as f:
            src = f.read()
        uses = check_source(src, a.script)
    except OSError as e:
        sys.stderr.write(f"shoal compat: cannot read {a.script}: {e.strerror}\n")
        return 2
    except SyntaxError as e:
        sys.stderr.write(f"shoal compat: {a.script} line {e.lineno}: {e.msg}; fix the script (or run it with python) first\n")
        return 2
    out = sys.stderr if a.run else sys.stdout
    if a.json:
        json.dump({"script": a.script, "apis": [u.as_dict() for u in uses], "ok": not failed(uses)}, out, indent=2)
        out.write("\n")
    elif not (a.run and a.quiet and not failed(uses)):
        report(uses, a.script, out)
    if a.run:
        out.flush()
        return run_script(a.script, a.args)
    return 1 if failed(uses) else 0


if __name__ == "__main__":
    sys.exit(main())
