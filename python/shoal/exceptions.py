"""Exceptions a Ray Core user catches, with Ray's names."""


class RayError(Exception):
    """Base of every shoal error."""


class RayTaskError(RayError):
    """A task or actor method raised. Carries the remote traceback; `ray.get` raises it as an
    instance of both RayTaskError and the original exception's class."""

    def __init__(self, function_name="", traceback_str="", cause=None, pid=None, ip=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        super().__init__(traceback_str)

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip))

    def __str__(self):
        return f"{type(self.cause).__name__ if self.cause is not None else 'Error'} in {self.function_name} (pid={self.pid}):\n{self.traceback_str}"

    def as_instanceof_cause(self):
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(RayTaskError, cause_cls) or isinstance(self.cause, RayTaskError):
            return self
        try:
            cls = _dual.get(cause_cls)
            if cls is None:
                name = f"RayTaskError({cause_cls.__name__})"

                def _init(s, cause, task_error):
                    s.__dict__.update(task_error.__dict__)
                    s.args = cause.args if isinstance(cause.args, tuple) else (str(cause),)

                cls = type(name, (RayTaskError, cause_cls), {"__init__": _init, "__str__": RayTaskError.__str__,
                                                             "__reduce__": RayTaskError.__reduce__})
                _dual[cause_cls] = cls
            return cls(self.cause, self)
        except TypeError:
            return self


_dual = {}


class GetTimeoutError(RayError, TimeoutError):
    """`get` timed out before the objects were ready."""


class RayActorError(RayError):
    """The actor died or could not be created."""

    def __init__(self, msg="The actor died unexpectedly before finishing this task."):
        super().__init__(msg)


class ActorDiedError(RayActorError):
    """The actor is dead."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unavailable (restarting)."""


class WorkerCrashedError(RayError):
    """The worker process running the task died and no retries were left."""


class OutOfMemoryError(RayError):
    """The task used more memory than its memory= request: the node's memory monitor stopped
    its worker (and any retry's) and no retries were left. The message names the task and what
    it used (shoal launch/run --memory-monitor-interval tunes or turns off the monitor)."""


class ObjectLostError(RayError):
    """The object's value is gone."""


class ObjectFreedError(ObjectLostError):
    """The object was freed: every reference to it was dropped."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object exited."""


class ObjectStoreFullError(RayError):
    """The object does not fit in the object store."""


class TaskUnschedulableError(RayError):
    """The task asks for more resources than the cluster has."""


class ActorUnschedulableError(TaskUnschedulableError):
    """The actor asks for more resources than the cluster has."""


class TaskCancelledError(RayError):
    """The task was cancelled."""


class RaySystemError(RayError):
    """An internal error of the runtime."""


class RuntimeEnvSetupError(RayError):
    """A worker could not set up the task's runtime_env (python/shoal/_runtime_env.py)."""
