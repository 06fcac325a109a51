"""Core microbenchmarks with the metric names of `ray microbenchmark`, for shoal or for Ray.

    python -m shoal.bench [--backend shoal|ray] [--only NAME,...] [--json FILE] [--duration S]

The same code runs against either module (``import shoal as ray`` or the real ``ray``), so the
two sets of figures compare like with like on one machine. Each metric runs a short warm-up,
then several timed trials; it reports the median rate per second over the trials and their
standard deviation. ``shoal bench core`` runs this module inside ``shoal run``;
scripts/bench-vs-ray.sh runs it on both backends and prints the ratios.

With the shoal backend, the module joins the cluster in SHOAL_ADDRESS (inside ``shoal run``) or
starts a local one with shoal.init(). With the ray backend it starts a local Ray with
``ray.init(num_cpus=2, include_dashboard=False, ...)``.

Sizes differ from Ray's script where Ray's would not fit a few seconds on a 2-core machine
(multi_client_tasks_async and n_n_actor_calls_async submit fewer calls per round); the rates are
per call either way. GB means 10**9 bytes.
"""
import argparse
import gc
import json
import os
import platform
import signal
import statistics
import sys
import time

GB = 1e9
GIB = 1 << 30


# ------------------------------------------------------------------ remote definitions

class _Remotes:
    """The remote functions and actor classes, made for one backend module. They are defined
    inside a function so that cloudpickle ships them by value: the workers need not import
    this module."""

    def __init__(self, ray):
        @ray.remote
        def small_value():
            return b"ok"

        @ray.remote(num_cpus=0)
        class Actor:
            def small_value(self):
                return b"ok"

            def small_value_batch(self, n):
                # n tasks submitted from inside an actor: the "multi client" case
                ray.get([small_value.remote() for _ in range(n)])

        @ray.remote
        def call_actors(actors, n):
            # n actor calls, round-robin over the actors, from inside a task: the "n:n" case
            ray.get([actors[i % len(actors)].small_value.remote() for i in range(n)])

        @ray.remote(num_cpus=0)
        class AsyncActor:
            async def small_value(self):
                return b"ok"

            async def small_value_with_arg(self, x):
                return b"ok"

        @ray.remote
        def call_actors_with_arg(actors, n):
            # n calls with an object-ref argument, round-robin over the actors, from a task
            x = ray.put(0)
            ray.get([actors[i % len(actors)].small_value_with_arg.remote(x) for i in range(n)])

        self.small_value = small_value
        self.Actor = Actor
        self.call_actors = call_actors
        self.AsyncActor = AsyncActor
        self.call_actors_with_arg = call_actors_with_arg


# ------------------------------------------------------------------ metrics
#
# Each metric's setup(ctx) returns (fn, multiplier, cleanup): fn() is one round, multiplier
# the number of units (calls or GB) one round counts for, cleanup() releases what setup made.

METRICS = {}


def metric(name, unit, doc):
    def deco(setup):
        METRICS[name] = {"name": name, "unit": unit, "doc": doc, "setup": setup}
        return setup
    return deco


def _kill_all(ctx, actors):
    for a in actors:
        try:
            ctx.ray.kill(a)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


@metric("single_client_tasks_sync", "calls/s",
        "one task submitted and waited for at a time (ray.get(f.remote())): task round-trip latency")
def _tasks_sync(ctx):
    f = ctx.remotes.small_value
    return (lambda: ctx.ray.get(f.remote())), 1, None


@metric("single_client_tasks_async", "calls/s",
        "1000 tasks submitted, then all got at once: task throughput from one driver")
def _tasks_async(ctx):
    f = ctx.remotes.small_value
    n = 1000
    return (lambda: ctx.ray.get([f.remote() for _ in range(n)])), n, None


@metric("multi_client_tasks_async", "calls/s",
        "4 actors (num_cpus=0) each submit a batch of tasks and get them: task throughput from several "
        "submitters (Ray: 4 x 10000 per round; here 4 x 1000)")
def _multi_client_tasks(ctx):
    m, n = 4, 1000
    actors = [ctx.remotes.Actor.remote() for _ in range(m)]
    ctx.ray.get([a.small_value.remote() for a in actors])  # all started
    return (lambda: ctx.ray.get([a.small_value_batch.remote(n) for a in actors])), m * n, \
        (lambda: _kill_all(ctx, actors))


@metric("1_1_actor_calls_sync", "calls/s",
        "one actor method call at a time, waited for: actor call round-trip latency")
def _actor_sync(ctx):
    a = ctx.remotes.Actor.remote()
    ctx.ray.get(a.small_value.remote())
    return (lambda: ctx.ray.get(a.small_value.remote())), 1, (lambda: _kill_all(ctx, [a]))


@metric("1_1_actor_calls_async", "calls/s",
        "1000 calls to one actor submitted, then got at once: actor call throughput")
def _actor_async(ctx):
    a = ctx.remotes.Actor.remote()
    ctx.ray.get(a.small_value.remote())
    n = 1000
    return (lambda: ctx.ray.get([a.small_value.remote() for _ in range(n)])), n, (lambda: _kill_all(ctx, [a]))


@metric("n_n_actor_calls_async", "calls/s",
        "4 tasks each make a batch of calls round-robin over cpu_count/2 actors: actor calls from "
        "several callers (Ray: 4 x 5000 per round; here 4 x 1000)")
def _n_n_actor(ctx):
    m, n = 4, 1000
    n_actors = max(1, (os.cpu_count() or 2) // 2)
    actors = [ctx.remotes.Actor.remote() for _ in range(n_actors)]
    ctx.ray.get([a.small_value.remote() for a in actors])
    work = ctx.remotes.call_actors
    return (lambda: ctx.ray.get([work.remote(actors, n) for _ in range(m)])), m * n, \
        (lambda: _kill_all(ctx, actors))


@metric("1_1_async_actor_calls_sync", "calls/s",
        "one call at a time to an async actor (async def methods), waited for: async actor round-trip latency")
def _async_actor_sync(ctx):
    a = ctx.remotes.AsyncActor.remote()
    ctx.ray.get(a.small_value.remote())
    return (lambda: ctx.ray.get(a.small_value.remote())), 1, (lambda: _kill_all(ctx, [a]))


@metric("1_1_async_actor_calls_async", "calls/s",
        "1000 calls to one async actor submitted, then got at once: async actor call throughput")
def _async_actor_async(ctx):
    a = ctx.remotes.AsyncActor.remote()
    ctx.ray.get(a.small_value.remote())
    n = 1000
    return (lambda: ctx.ray.get([a.small_value.remote() for _ in range(n)])), n, (lambda: _kill_all(ctx, [a]))


@metric("1_1_async_actor_calls_with_args_async", "calls/s",
        "1000 calls with a small argument to one async actor, then got at once")
def _async_actor_args(ctx):
    a = ctx.remotes.AsyncActor.remote()
    ctx.ray.get(a.small_value.remote())
    n = 1000
    return (lambda: ctx.ray.get([a.small_value_with_arg.remote(i) for i in range(n)])), n, \
        (lambda: _kill_all(ctx, [a]))


@metric("n_n_actor_calls_with_arg_async", "calls/s",
        "4 tasks each make a batch of calls with an object-ref argument round-robin over cpu_count/2 async "
        "actors (Ray: n x 1000 per client; here 4 x 500)")
def _n_n_actor_arg(ctx):
    m, n = 4, 500
    n_actors = max(1, (os.cpu_count() or 2) // 2)
    actors = [ctx.remotes.AsyncActor.remote() for _ in range(n_actors)]
    ctx.ray.get([a.small_value.remote() for a in actors])
    work = ctx.remotes.call_actors_with_arg
    return (lambda: ctx.ray.get([work.remote(actors, n) for _ in range(m)])), m * n, \
        (lambda: _kill_all(ctx, actors))


@metric("single_client_put_calls", "calls/s", "ray.put(0) in a loop: small-object put latency")
def _put_calls(ctx):
    return (lambda: ctx.ray.put(0)), 1, None


@metric("single_client_get_calls", "calls/s", "ray.get of one small object already put: small-object get latency")
def _get_calls(ctx):
    ref = ctx.ray.put(0)
    ctx.ray.get(ref)
    return (lambda: ctx.ray.get(ref)), 1, None


@metric("single_client_put_gigabytes", "GB/s",
        "ray.put of an 800 MiB numpy array (100 Mi int64, as in Ray's script) in a loop: large-put bandwidth")
def _put_gigabytes(ctx):
    import numpy as np
    arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
    return (lambda: ctx.ray.put(arr)), arr.nbytes / GB, None


@metric("placement_group_create_removal", "groups/s",
        "100 placement groups of one {custom: 0.001} bundle created, waited for, and removed")
def _pg(ctx):
    from_util = ctx.ray.util
    num = 100
    bundle = {"custom": 0.001} if ctx.has_custom else {"CPU": 0.001}

    def round_():
        pgs = [from_util.placement_group([dict(bundle)]) for _ in range(num)]
        for pg in pgs:
            if not pg.wait(timeout_seconds=30):
                raise TimeoutError("a placement group was not ready within 30 s")
        for pg in pgs:
            from_util.remove_placement_group(pg)
    return round_, num, None


@metric("streaming_generator_yields", "yields/s",
        "a task yields 1000 small values with num_returns='streaming'; the driver gets each ref as it is "
        "yielded and gets its value: streamed generator throughput (docs/ray-tasks.md)")
def _streaming_generator(ctx):
    n = 1000

    def gen(k):
        for i in range(k):
            yield i
    g = ctx.ray.remote(num_returns="streaming")(gen)

    def round_():
        got = 0
        for ref in g.remote(n):
            ctx.ray.get(ref)
            got += 1
        if got != n:
            raise RuntimeError(f"the generator gave {got} values, want {n}")
    return round_, n, None


@metric("memcpy_gigabytes", "GB/s",
        "baseline, no cluster involved: one-thread numpy copy of 1 GiB into an already-touched 1 GiB array")
def _memcpy(ctx):
    import numpy as np
    src = np.ones(GIB, dtype=np.uint8)
    dst = np.zeros(GIB, dtype=np.uint8)
    dst.fill(1)  # touch every page, so the copy does not measure page faults
    return (lambda: np.copyto(dst, src)), GIB / GB, None


@metric("put_1gib_gigabytes", "GB/s", "put of a 1 GiB numpy array in a loop: large-put bandwidth, to compare with memcpy")
def _put_1gib(ctx):
    import numpy as np
    arr = np.ones(GIB, dtype=np.uint8)
    return (lambda: ctx.ray.put(arr)), GIB / GB, None


# ------------------------------------------------------------------ measuring

class MetricTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise MetricTimeout()


def measure(fn, multiplier, duration, trials):
    """Warm up for a fifth of `duration` (at least one round), then run `trials` trials of equal
    length filling the rest (each at least one round). Returns the per-trial rates."""
    warm = duration * 0.2
    t0 = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - t0 >= warm:
            break
    trial_time = duration * 0.8 / trials
    rates = []
    for _ in range(trials):
        count = 0
        t0 = time.perf_counter()
        while True:
            fn()
            count += 1
            el = time.perf_counter() - t0
            if el >= trial_time:
                break
        rates.append(multiplier * count / el)
    return rates


class Context:
    def __init__(self, ray, backend):
        self.ray = ray
        self.backend = backend
        self.remotes = _Remotes(ray)
        try:
            self.has_custom = ray.cluster_resources().get("custom", 0) >= 0.1
        except Exception:  # noqa: BLE001
            self.has_custom = False


def connect(backend):
    """Import and initialize the backend module; returns (module, version)."""
    if backend == "ray":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        import ray.util  # noqa: F401
        ray.init(num_cpus=2, include_dashboard=False, resources={"custom": 100}, log_to_driver=False,
                 configure_logging=False)
        return ray, ray.__version__
    import shoal
    import shoal.util  # noqa: F401
    if os.environ.get("SHOAL_ADDRESS"):
        shoal.init()
    else:
        shoal.init(num_cpus=2, resources={"custom": 100})
    return shoal, shoal.__version__


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "system": platform.platform()}


def fmt_rate(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def run(backend, names, duration, trials, timeout, out=sys.stdout, err=sys.stderr):
    load0 = loadavg()
    if load0 is not None and load0 > (os.cpu_count() or 1):
        print(f"# warning: the load average is {load0:.1f} on {os.cpu_count()} CPUs: other work is running and "
              "the figures will be low and noisy", file=err)
    t_init = time.perf_counter()
    ray, version = connect(backend)
    init_s = time.perf_counter() - t_init
    print(f"# backend {backend} {version}, init {init_s:.2f} s, {duration:g} s per metric, {trials} trials", file=err)
    ctx = Context(ray, backend)
    if not ctx.has_custom and "placement_group_create_removal" in names:
        print("# no 'custom' resource in the cluster: placement groups use {CPU: 0.001} bundles", file=err)
    results, errors = [], {}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for name in names:
            m = METRICS[name]
            cleanup = None
            t0 = time.perf_counter()
            signal.alarm(max(1, int(timeout)))
            try:
                fn, mult, cleanup = m["setup"](ctx)
                rates = measure(fn, mult, duration, trials)
                fn = None
            except MetricTimeout:
                errors[name] = f"did not finish within {timeout:g} s"
            except Exception as e:  # noqa: BLE001 - report and go on with the next metric
                errors[name] = f"{type(e).__name__}: {e}"
            else:
                med = statistics.median(rates)
                sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
                results.append({"name": name, "value": med, "stdev": sd, "unit": m["unit"],
                                "trials": [round(r, 4) for r in rates]})
            finally:
                signal.alarm(0)
            try:
                if cleanup:
                    cleanup()
            except Exception:  # noqa: BLE001
                pass
            gc.collect()
            took = time.perf_counter() - t0
            if name in errors:
                print(f"{name:32s} ERROR {errors[name]} ({took:.1f} s)", file=err)
            else:
                r = results[-1]
                print(f"{name:32s} {fmt_rate(r['value']):>12s} +- {fmt_rate(r['stdev']):>10s} {r['unit']:9s} ({took:.1f} s)",
                      file=err)
            err.flush()
    finally:
        signal.signal(signal.SIGALRM, old)
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
    report = {"backend": backend, "version": version, "init_seconds": round(init_s, 3),
              "duration": duration, "trials": trials, "date": time.strftime("%Y-%m-%d"),
              "machine": machine(), "loadavg": [load0, loadavg()], "results": results, "errors": errors}
    print_table(report, out)
    return report


def print_table(report, out=sys.stdout):
    out.write(f"{report['backend']} {report['version']} on {report['machine']['cpus']} x "
              f"{report['machine']['cpu_model']} (median of {report['trials']} trials, {report['duration']:g} s per metric)\n")
    out.write(f"{'metric':32s} {'rate':>12s} {'stdev':>12s}  unit\n")
    for r in report["results"]:
        out.write(f"{r['name']:32s} {fmt_rate(r['value']):>12s} {fmt_rate(r['stdev']):>12s}  {r['unit']}\n")
    for name, e in report["errors"].items():
        out.write(f"{name:32s} {'ERROR':>12s} {'':>12s}  {e}\n")
    out.flush()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m shoal.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="metrics:\n" + "\n".join(f"  {n:30s} {m['doc']}" for n, m in METRICS.items()))
    p.add_argument("--backend", choices=["shoal", "ray"], default=os.environ.get("SHOAL_BENCH_BACKEND", "shoal"))
    p.add_argument("--only", default=os.environ.get("SHOAL_BENCH_ONLY", ""),
                   help="comma-separated metric names (default: all)")
    p.add_argument("--json", default=os.environ.get("SHOAL_BENCH_JSON", ""), help="also write the results here as JSON")
    p.add_argument("--duration", type=float, default=float(os.environ.get("SHOAL_BENCH_DURATION", "3")),
                   help="seconds per metric: a fifth warms up, the rest is split into the trials (default 3)")
    p.add_argument("--trials", type=int, default=5, help="timed trials per metric (default 5)")
    p.add_argument("--timeout", type=float, default=0,
                   help="give up on a metric after this many seconds (default 30 + 10 x duration)")
    p.add_argument("--list", action="store_true", help="list the metrics and exit")
    a = p.parse_args(argv)
    if a.list:
        for n, m in METRICS.items():
            print(f"{n:32s} {m['unit']:9s} {m['doc']}")
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        p.error(f"unknown metric(s) {', '.join(unknown)}; --list shows them")
    if a.duration <= 0 or a.trials < 1:
        p.error("--duration must be positive and --trials at least 1")
    timeout = a.timeout or 30 + 10 * a.duration
    report = run(a.backend, names, a.duration, a.trials, timeout)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
