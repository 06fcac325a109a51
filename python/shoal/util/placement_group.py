"""Placement groups: reserve bundles of resources at once, then schedule tasks and actors in them."""
from .. import _api
from .. import _client as C
from .. import _wire as w
from .. import exceptions as exc

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    def __init__(self, pg_id, bundles, strategy, ready_ref=None):
        self.id = pg_id
        self.bundle_specs = bundles
        self.strategy = strategy
        self._ready = ready_ref

    @property
    def bundle_count(self):
        return len(self.bundle_specs)

    def ready(self):
        """An ObjectRef that resolves once every bundle is reserved."""
        if self._ready is None:
            self._ready = C.ObjectRef(self.id[:12] + b"\xff\xff\xff\xfc")
        return self._ready

    def wait(self, timeout_seconds=30):
        try:
            _api.get(self.ready(), timeout=timeout_seconds)
            return True
        except exc.GetTimeoutError:
            return False

    def __reduce__(self):
        return (PlacementGroup, (self.id, self.bundle_specs, self.strategy))

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


def placement_group(bundles, strategy="PACK", name="", lifetime=None, _max_cpu_fraction_per_node=None):
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("The placement group `bundles` argument must be a non-empty list of dicts, e.g. [{'CPU': 1}]")
    for i, b in enumerate(bundles):
        if not isinstance(b, dict) or not b or all(v == 0 for v in b.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 values. Bundles: {bundles}")
        for k, v in b.items():
            if v < 0:
                raise ValueError(f"bundle {i}: resource {k} must not be negative")
    if strategy not in _STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: {list(_STRATEGIES)}.")
    cl = _api._auto_init()
    pid = cl.next_id(b"\xff\xff\xff\xfd")
    cl.request(w.PG_CREATE, {"pg": pid, "bundles": [{k: float(v) for k, v in b.items()} for b in bundles],
                             "strategy": strategy, "name": name})
    ready = C.ObjectRef(pid[:12] + b"\xff\xff\xff\xfc", cl, _owned=True)
    return PlacementGroup(pid, [dict(b) for b in bundles], strategy, ready)


def remove_placement_group(placement_group):
    _api._auto_init().request(w.PG_REMOVE, {"id": placement_group.id})


def get_current_placement_group():
    """The placement group the calling task or actor runs in, or None (in a driver, or outside
    any group), as Ray's: read from the runtime context and the state API."""
    from ..runtime_context import get_runtime_context
    pid = get_runtime_context().get_placement_group_id()
    if pid is None:
        return None
    from .state import get_placement_group
    g = get_placement_group(pid)
    if g is None:
        return None
    return PlacementGroup(bytes.fromhex(pid), [dict(b["unit_resources"]) for b in g.bundles], g.strategy)


def placement_group_table(placement_group=None):
    """Ray's table of placement groups: one group's dict when one is given, else every group's
    by hex id; each has placement_group_id, name, bundles ({index: resources}),
    bundles_to_node_id, strategy and state."""
    from .state import list_placement_groups

    def row(g):
        return {"placement_group_id": g.placement_group_id, "name": g.name, "strategy": g.strategy, "state": g.state,
                "bundles": {i: dict(b["unit_resources"]) for i, b in enumerate(g.bundles)},
                "bundles_to_node_id": {i: b["node_id"] for i, b in enumerate(g.bundles)}}
    if placement_group is not None:
        gs = list_placement_groups(filters=[("placement_group_id", "=", placement_group.id.hex())], limit=0, detail=True)
        return row(gs[0]) if gs else {}
    return {g.placement_group_id: row(g) for g in list_placement_groups(limit=0, detail=True)}
