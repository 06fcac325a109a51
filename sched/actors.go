package sched

// Actor method calls do not go through the core's queues (an actor's calls all run on its one
// worker), but what becomes of them is policy all the same, so it lives here, pure, for the
// agent to apply (nodeagent/actors.go, docs/ray-actors.md):
//
//	queued (arguments pending or ready) ──ActorQueue.Next──> sent to the actor's worker
//	   ^                                                        │ the actor's process died
//	   └──────── ActorCallOnDeath: retry (restarting, retries left) ┴─> fail (actor_died)
//
// The worker bounds how many calls run at once (max_concurrency, concurrency groups); the
// agent sends it every call whose arguments are ready, so that a threaded or async actor has
// calls to run while others wait.

// ActorQueue is an actor's queue of calls not yet sent to its worker, as the dispatch policy
// sees it.
type ActorQueue struct {
	// Concurrency is the actor's max_concurrency over all its concurrency groups; 0 or 1
	// means one call at a time, run in submission order.
	Concurrency int
	// Len is the number of queued calls; Ready(i) reports whether call i (in submission order)
	// has its arguments sealed. Next asks as few as it can: an ordered actor only the first.
	Len   int
	Ready func(i int) bool
}

// Ordered reports whether the actor's calls must reach its worker in submission order: a
// sequential actor (max_concurrency 1) runs them in the order each caller submitted them, as
// Ray's do. A threaded or async actor runs them as their arguments become ready (Ray gives
// no order there either), so a call waiting for a slow argument holds back no other.
func (q ActorQueue) Ordered() bool { return q.Concurrency <= 1 }

// Next returns the index of the call to send now, or -1 when none may go: an ordered actor
// sends only its first call, once ready; an unordered one its first ready call.
func (q ActorQueue) Next() int {
	if q.Ordered() {
		if q.Len > 0 && q.Ready(0) {
			return 0
		}
		return -1
	}
	for i := 0; i < q.Len; i++ {
		if q.Ready(i) {
			return i
		}
	}
	return -1
}

// ActorCallOnDeath decides what becomes of a call that its actor's worker was running (or
// had been sent) when the actor's process died: with the actor restarting and retries left
// (max_task_retries: -1 forever), it is sent again to the new instance; otherwise it fails
// with actor_died. It returns whether to retry and the retries left after this one.
func ActorCallOnDeath(restarting bool, retriesLeft int) (retry bool, left int) {
	if !restarting || retriesLeft == 0 {
		return false, retriesLeft
	}
	if retriesLeft < 0 {
		return true, retriesLeft
	}
	return true, retriesLeft - 1
}
