"""shoal.util: placement groups, ActorPool, queue, multiprocessing and collective, as ray.util spells them."""
from .placement_group import PlacementGroup, get_current_placement_group, placement_group, remove_placement_group  # noqa: F401
from . import scheduling_strategies  # noqa: F401
from .actor_pool import ActorPool  # noqa: F401

__all__ = ["placement_group", "remove_placement_group", "PlacementGroup", "get_current_placement_group", "scheduling_strategies",
           "ActorPool", "queue", "multiprocessing", "collective"]


def __getattr__(name):
    # ray.util.queue / .multiprocessing / .collective as attributes, imported on first use
    # (collective loads numpy)
    if name in ("queue", "multiprocessing", "collective"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
