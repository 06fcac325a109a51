"""Scheduling strategies, as ray.util.scheduling_strategies spells them (docs/ray-tasks.md).

`scheduling_strategy=` takes None or "DEFAULT", "SPREAD", a PlacementGroupSchedulingStrategy
or a NodeAffinitySchedulingStrategy; `label_selector=` a dict of label name to "value",
"!value", "in(a,b)" or "!in(a,b)". Anything else is refused with a ValueError at `.remote()`
rather than ignored.
"""


class PlacementGroupSchedulingStrategy:
    def __init__(self, placement_group, placement_group_bundle_index=-1, placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id` (as get_runtime_context().get_node_id() or nodes()' NodeID
    name it). soft=False: only there; a node that is unknown or gone fails the task with
    TaskUnschedulableError. soft=True: there while it is alive and has room, else elsewhere."""

    def __init__(self, node_id, soft=False, _spill_on_unavailable=False, _fail_on_unavailable=False):
        if _spill_on_unavailable or _fail_on_unavailable:
            raise ValueError("NodeAffinitySchedulingStrategy: _spill_on_unavailable and _fail_on_unavailable are not "
                             "supported by shoal; use soft=True to let the task run elsewhere")
        self.node_id = node_id
        self.soft = soft


class NodeLabelSchedulingStrategy:
    """Ray's deprecated label strategy: refused; use the label_selector option instead."""

    def __init__(self, hard=None, soft=None):
        raise ValueError("NodeLabelSchedulingStrategy is not supported by shoal (Ray deprecates it too); "
                         "use .options(label_selector={'key': 'value'}) instead")


def _node_id_str(node_id):
    if isinstance(node_id, bytes):
        return node_id.decode()
    if hasattr(node_id, "hex") and not isinstance(node_id, str):
        return node_id.hex()
    if not isinstance(node_id, str) or not node_id:
        raise ValueError(f"NodeAffinitySchedulingStrategy: node_id must be a node id string, got {node_id!r}")
    return node_id


def parse_label_selector(sel):
    """Ray's label_selector dict -> the wire's [{key, op, values}] (op "in" or "!in")."""
    if sel is None:
        return []
    if not isinstance(sel, dict):
        raise ValueError(f"label_selector must be a dict of label name to value, got {type(sel).__name__}")
    out = []
    for k, v in sel.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"label_selector: label names are non-empty strings, got {k!r}")
        if not isinstance(v, str):
            raise ValueError(f"label_selector[{k!r}]: the value must be a string such as 'v', '!v', 'in(a,b)' or '!in(a,b)', got {v!r}")
        s = v.strip()
        neg = s.startswith("!")
        if neg:
            s = s[1:].strip()
        if s.startswith("in(") and s.endswith(")"):
            vals = [x.strip() for x in s[3:-1].split(",")]
            if not vals or any(not x for x in vals):
                raise ValueError(f"label_selector[{k!r}] = {v!r}: in(...) needs a comma-separated list of values")
        elif s and all(c.isalnum() or c in "-_." for c in s):
            vals = [s]
        else:
            raise ValueError(f"label_selector[{k!r}] = {v!r}: write 'value', '!value', 'in(a,b)' or '!in(a,b)'")
        out.append({"key": k, "op": "!in" if neg else "in", "values": vals})
    return out


def strategy_fields(opts):
    """The task spec's scheduling fields for `opts` (options of a task or an actor); a
    PlacementGroupSchedulingStrategy is handled by the placement group fields instead."""
    strat = opts.get("scheduling_strategy")
    fields = {}
    if strat is None or strat == "DEFAULT" or isinstance(strat, PlacementGroupSchedulingStrategy):
        pass
    elif strat == "SPREAD":
        fields["strategy"] = "SPREAD"
    elif isinstance(strat, NodeAffinitySchedulingStrategy):
        fields.update(strategy="NODE_AFFINITY", node=_node_id_str(strat.node_id), soft=bool(strat.soft))
    else:
        raise ValueError(f"scheduling_strategy {strat!r} is not supported: use None, 'DEFAULT', 'SPREAD', "
                         "PlacementGroupSchedulingStrategy or NodeAffinitySchedulingStrategy")
    labels = parse_label_selector(opts.get("label_selector"))
    if labels:
        if isinstance(strat, PlacementGroupSchedulingStrategy) or opts.get("placement_group") not in (None, "default"):
            raise ValueError("label_selector cannot be combined with a placement group; the group's bundles decide the nodes")
        fields["labels"] = labels
    return fields
