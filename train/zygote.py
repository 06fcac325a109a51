# The warm spare of a rank of `shoal train` (train/spare.go embeds this file).
#
# The RankActor starts `python [the rank's interpreter options] -c STUB` with the rank's
# environment (less the variables that change per attempt); STUB reads this source as a JSON
# line from fd 5 and runs it. Then, on fd 5:
#   1. a setup line {"preload", "mode", "target", "args", "cwd"}: set sys.argv and sys.path[0]
#      as the cold interpreter would for that command, and import the preload modules (a name
#      ending in "?" is skipped when it is not installed); an import that fails otherwise makes
#      the spare exit 1 saying why on stderr (the actor then starts the rank cold);
#   2. wait; end of file (the actor dropped the spare, or died) exits 0 at once;
#   3. a start line {"env", "mode", "target", "args", "cwd", "orig_argv"}: become the rank, with
#      exactly that environment, cwd, sys.argv, sys.orig_argv, sys.path[0], the signal
#      dispositions the process started with, a new __main__, and run the script, module or
#      code. An uncaught exception is shown through sys.excepthook without this file's frames,
#      so the rank's output and exit status are those of a cold `python ...`.
# Every name here lives inside _spare() so the rank's __main__ sees none of them.


def _spare(f):
    import atexit
    import builtins
    import importlib
    import importlib.machinery
    import io
    import json
    import os
    import signal
    import sys
    import types

    me = _spare.__code__.co_filename
    line = f.readline()
    if not line:
        os._exit(0)
    setup = json.loads(line)

    def set_path0(mode, target):
        if mode == "script":
            p0 = os.path.dirname(os.path.realpath(target))
        elif mode == "module":
            p0 = os.getcwd()
        else:
            p0 = ""
        if sys.path and sys.path[0] == "":
            sys.path[0] = p0
        else:
            sys.path.insert(0, p0)

    def argv_of(msg):
        first = {"script": msg["target"], "module": "-m", "code": "-c"}[msg["mode"]]
        return [first] + list(msg["args"])

    # while idle, the signals Slurm sends to every process of a step (scancel -s USR1,
    # --signal) must not end the spare; SIGTERM does (the gang is being stopped)
    held = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)}
    for s in held:
        signal.signal(s, signal.SIG_IGN)
    # registered first, so it runs last: a rank ended by an uncaught KeyboardInterrupt exits
    # through SIGINT after every other exit handler, as a cold interpreter does
    interrupted = []

    def exit_by_sigint():
        if interrupted:
            for s in (sys.stdout, sys.stderr):
                try:
                    s.flush()
                except Exception:  # noqa: BLE001 - closed by the rank
                    pass
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    atexit.register(exit_by_sigint)

    sys.argv = argv_of(setup)
    set_path0(setup["mode"], setup["target"])
    for name in setup["preload"]:
        optional = name.endswith("?")
        name = name.rstrip("?")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not (optional and e.name == name):
                raise SystemExit(f"shoal train: the warm spare could not preload {name}: {e}")
        except BaseException as e:  # noqa: BLE001 - any failure of a preload ends the spare
            import traceback
            traceback.print_exc()
            raise SystemExit(f"shoal train: the warm spare could not preload {name}: {e!r}") from None

    try:
        line = f.readline()
    except KeyboardInterrupt:
        os._exit(130)
    if not line:
        os._exit(0)
    msg = json.loads(line)
    f.close()

    # become the rank
    env = msg["env"]
    for k in list(os.environ):
        if k not in env:
            del os.environ[k]
    for k, v in env.items():
        if os.environ.get(k) != v:
            os.environ[k] = v
    os.chdir(msg["cwd"] or ".")
    sys.argv = argv_of(msg)
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = sys.orig_argv[:1] + list(msg["orig_argv"][1:])  # [0]: the interpreter as started
    # sys.path[0] is already the command's: the actor uses a spare only for the very command
    # (and cwd) it was made for
    for s, h in held.items():
        signal.signal(s, h)

    try:
        if msg["mode"] == "module":
            import runpy
            runpy._run_module_as_main(msg["target"], True)  # what `python -m` calls
        else:
            main = types.ModuleType("__main__")
            main.__builtins__ = builtins
            if msg["mode"] == "script":
                path = os.path.abspath(msg["target"])  # __main__.__file__ is absolute since 3.9
                main.__file__ = path
                main.__cached__ = None
                main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
                with io.open_code(path) as fh:
                    code = compile(fh.read(), path, "exec", dont_inherit=True)
            else:
                main.__loader__ = importlib.machinery.BuiltinImporter
                code = compile(msg["target"], "<string>", "exec", dont_inherit=True)
            sys.modules["__main__"] = main
            exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - shown as the interpreter shows it
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == me:
            tb = tb.tb_next
        e.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
        if isinstance(e, KeyboardInterrupt):
            interrupted.append(True)
        sys.excepthook(type(e), e, tb)
        raise SystemExit(1) from None


_spare(f)  # noqa: F821 - f is the stub's reader of fd 5
