"""shoal.util: placement groups, as ray.util spells them."""
from .placement_group import PlacementGroup, get_current_placement_group, placement_group, remove_placement_group  # noqa: F401
from . import scheduling_strategies  # noqa: F401

__all__ = ["placement_group", "remove_placement_group", "PlacementGroup", "get_current_placement_group", "scheduling_strategies"]
