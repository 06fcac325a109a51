"""Small points where shoal follows Ray's documented behaviour, found by running Ray's own core
test files against shoal (docs/ray-conformance.md, scripts/ray-conformance.sh). Each is a hook
called from the module it concerns, kept here so those modules change by a line."""
import inspect


def check_task_function(fn):
    """Ray refuses `async def` as a remote function (a task is not run on an event loop): a
    ValueError at decoration, saying what to do instead. Async actor methods are fine."""
    if inspect.iscoroutinefunction(fn):
        raise ValueError(f"'async def' should not be used for remote tasks ({getattr(fn, '__qualname__', fn)}): "
                         "wrap the coroutine in a plain function that runs it with asyncio.run(...), "
                         "or make it a method of an async actor")


def task_function_name(fn):
    """get_task_function_name() of a task, as Ray names it: the function's module and name
    (not its qualified name: a function defined in another function is module.name)."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__name__', '')}"


def actor_function_name(cls, method):
    """get_task_function_name() in an actor, as Ray names it: module.Class.method for a plain
    method; for an `async def` method, the module and the method's qualified name."""
    m = getattr(cls, method, None)
    if m is not None and inspect.iscoroutinefunction(m):
        return f"{getattr(m, '__module__', cls.__module__)}.{m.__qualname__}"
    return f"{cls.__module__}.{cls.__name__}.{method}"


def check_pg_fit(opts, what, default_cpu):
    """A task or actor placed in a placement group whose resource request fits none of its
    bundles raises ValueError at .remote(), as Ray does (instead of waiting forever)."""
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
    strat = opts.get("scheduling_strategy")
    pg = strat.placement_group if isinstance(strat, PlacementGroupSchedulingStrategy) else opts.get("placement_group")
    bundles = getattr(pg, "bundle_specs", None)
    if not bundles:
        return
    req = {}
    if opts.get("num_cpus") is not None:
        req["CPU"] = opts["num_cpus"]
    elif default_cpu:
        req["CPU"] = default_cpu
    if opts.get("num_gpus") is not None:
        req["GPU"] = opts["num_gpus"]
    if opts.get("memory"):
        req["memory"] = opts["memory"]
    req.update(opts.get("resources") or {})
    for b in bundles:
        if all(b.get(k, 0) >= v for k, v in req.items()):
            return
    shown = [{k: float(v) for k, v in b.items()} for b in bundles]
    raise ValueError(f"Cannot schedule {what} with the placement group because the resource request {req} "
                     f"cannot fit into any bundles for the placement group, {shown}. Ask for less, or "
                     "create the placement group with a bundle that holds the request.")


def actor_method(inst, name):
    """The method an actor call runs, found on the actor's class as Ray does, so that an
    instance attribute of the same name (self.flag = True next to def flag(self)) does not
    hide it; what the class does not define (set on the instance) is taken from the instance."""
    import types
    m = inspect.getattr_static(type(inst), name, None)
    if isinstance(m, types.FunctionType):
        return types.MethodType(m, inst)
    return getattr(inst, name)


def check_namespace(namespace, where):
    """A namespace given to init(), an actor's options or get_actor() is None or a non-empty
    string, as Ray checks: TypeError or ValueError before anything is sent."""
    if namespace is None:
        return
    if not isinstance(namespace, str):
        raise TypeError(f"{where}: namespace must be None or a string, not {type(namespace).__name__} ({namespace!r})")
    if namespace == "":
        raise ValueError(f'{where}: "" is not a valid namespace; pass None (or leave it out) for the default')


def apply_job_config(job_config, namespace, runtime_env):
    """init(job_config=JobConfig(...)): its ray_namespace and runtime_env, unless init() was
    given them itself (as Ray: the explicit argument wins)."""
    if job_config is None:
        return namespace, runtime_env
    from .job_config import JobConfig
    if not isinstance(job_config, JobConfig):
        raise TypeError(f"init(job_config=...) takes a ray.job_config.JobConfig, not {type(job_config).__name__}")
    if namespace is None:
        namespace = job_config.ray_namespace
    if runtime_env is None:
        runtime_env = job_config.runtime_env
    return namespace, runtime_env
