"""shoal: a Ray-Core-compatible API on an ephemeral cluster.

A Ray Core script runs with ``import shoal as ray``::

    import shoal as ray
    ray.init()                      # joins the cluster of `shoal run`, or starts a local one

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))
"""
from . import actor, exceptions, job_config, util  # noqa: F401
from ._api import (ActorClass, ActorHandle, RemoteFunction, available_resources, cancel, cluster_resources, get,  # noqa: F401
                   get_actor, get_gpu_ids, get_runtime_context, init, is_initialized, kill, method, nodes, put, remote,
                   shutdown, wait)
from ._client import ObjectRef  # noqa: F401
from ._generator import DynamicObjectRefGenerator, ObjectRefGenerator  # noqa: F401
from ._observe import job_report, timeline  # noqa: F401

__version__ = "0.1.0"

__all__ = ["init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "kill", "cancel", "get_actor", "method",
           "cluster_resources", "get_gpu_ids", "available_resources", "nodes", "get_runtime_context", "ObjectRef", "exceptions",
           "util", "timeline", "job_report", "actor"]
