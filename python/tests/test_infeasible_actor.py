"""An actor that no node could ever hold fails at once, and so do calls on it (issue 13:
the core fails it instead of the actor waiting forever)."""
import pytest


def test_infeasible_actor_calls_fail(ray):
    @ray.remote(num_cpus=64)
    class Huge:
        def ping(self):
            return 1

    h = Huge.remote()
    with pytest.raises(ray.exceptions.RayActorError) as e:
        ray.get(h.ping.remote(), timeout=30)
    assert "CPU" in str(e.value), str(e.value)
