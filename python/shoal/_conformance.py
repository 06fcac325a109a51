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
