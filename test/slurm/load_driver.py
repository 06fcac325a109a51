"""The driver of scripts/chaos-load.sh: load on the 3-node Slurm cluster, each part checked.

  tasks N     N tiny tasks queued by this driver (submitted in waves of LOAD_WAVE, all queued
              before the first wave is read); the sum of their results is checked
  actors N    N actor creations: each is served (answers a call) or refused with the process
              cap's ActorDiedError (--max-workers-per-node); none may hang
  groups N    N placement groups created, waited for and removed, 50 at a time
  clients N   N threads of this driver, each submitting 100 tasks and checking their results
Prints "LOAD <part> ok|WRONG ..." with its time and rate.
"""
import os
import sys
import threading
import time

import shoal
from shoal.util.placement_group import placement_group, remove_placement_group

T = float(os.environ.get("LOAD_TIMEOUT", "1800"))


@shoal.remote(num_cpus=0.1, max_retries=3)
def one(i):
    return i


@shoal.remote(num_cpus=0)
class Tiny:
    def ping(self, i):
        return i


def say(*a):
    print(*a, flush=True)


def tasks(n):
    t0 = time.time()
    refs = [one.remote(i) for i in range(n)]
    t1 = time.time()
    say(f"QUEUED {n} tasks in {t1 - t0:.1f} s ({n / max(t1 - t0, 1e-9):.0f}/s)")
    total, k = 0, 0
    while refs:
        chunk, refs = refs[:20000], refs[20000:]
        total += sum(shoal.get(chunk, timeout=T))
        k += len(chunk)
    dt = time.time() - t0
    ok = total == n * (n - 1) // 2
    say(f"LOAD tasks {'ok' if ok else 'WRONG'} {n} tasks in {dt:.1f} s ({n / dt:.0f}/s end to end)")
    return ok


def actors(n):
    t0 = time.time()
    hs = [Tiny.remote() for _ in range(n)]
    served = refused = other = 0
    for i, h in enumerate(hs):
        try:
            if shoal.get(h.ping.remote(i), timeout=T) == i:
                served += 1
            else:
                other += 1
        except shoal.exceptions.RayActorError as e:
            if "max-workers-per-node" in str(e):
                refused += 1
            else:
                other += 1
                if other < 3:
                    say("ACTOR error", str(e)[:300])
    for h in hs:
        shoal.kill(h)
    dt = time.time() - t0
    ok = served + refused == n and served > 0
    say(f"LOAD actors {'ok' if ok else 'WRONG'} {n} creations in {dt:.1f} s: {served} served, {refused} refused at the process cap, {other} other")
    return ok


def groups(n):
    t0 = time.time()
    done = 0
    while done < n:
        k = min(50, n - done)
        pgs = [placement_group([{"CPU": 0.01}], strategy="PACK") for _ in range(k)]
        shoal.get([p.ready() for p in pgs], timeout=T)
        for p in pgs:
            remove_placement_group(p)
        done += k
    dt = time.time() - t0
    say(f"LOAD groups ok {n} created, ready and removed in {dt:.1f} s")
    return True


def clients(n):
    t0 = time.time()
    bad = []

    def client(c):
        try:
            got = shoal.get([one.remote(c * 1000 + i) for i in range(100)], timeout=T)
            if got != [c * 1000 + i for i in range(100)]:
                bad.append(c)
        except Exception as e:  # noqa: BLE001 - reported as a wrong result
            bad.append((c, repr(e)[:200]))

    th = [threading.Thread(target=client, args=(c,)) for c in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    dt = time.time() - t0
    say(f"LOAD clients {'ok' if not bad else 'WRONG'} {n} threads x 100 tasks in {dt:.1f} s {bad[:3] if bad else ''}")
    return not bad


def main():
    shoal.init()
    say("CLUSTER", os.environ["SHOAL_CLUSTER_ID"])
    say("STARTED")
    ok = True
    for part in os.environ.get("LOAD_PARTS", "clients:100,groups:1000,actors:10000,tasks:1000000").split(","):
        name, n = part.split(":")
        say("PART", name, n)
        ok = {"tasks": tasks, "actors": actors, "groups": groups, "clients": clients}[name](int(n)) and ok
    say("DONE", "ok" if ok else "wrong")
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
