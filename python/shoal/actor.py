"""Ray's `ray.actor` module: exit_actor, and the actor classes' names."""
from ._actor_exec import ActorExit as _ActorExit
from ._actor_exec import in_actor as _in_actor
from ._api import ActorClass, ActorHandle, ActorMethod, method  # noqa: F401


def exit_actor():
    """Intentionally end the current actor, as Ray's ray.actor.exit_actor does: the calling
    method raises out, its caller's get() raises ActorDiedError, calls that have not started
    fail with ActorDiedError, calls already running (threaded and async actors) finish, then
    __ray_shutdown__ and the atexit handlers run. The actor is not restarted.

    Raises TypeError outside an actor (in a driver or a task)."""
    if not _in_actor():
        raise TypeError("exit_actor API is called on a non-actor worker: call it from inside an actor method "
                        "(use shoal.kill(handle) to stop an actor from outside)")
    raise _ActorExit("exit_actor() was called")


__all__ = ["exit_actor", "ActorClass", "ActorHandle", "ActorMethod", "method"]
