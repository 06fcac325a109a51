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
    return None
