package nodeagent

// requeueCalls puts the calls that were in flight on ac's dead process back at the head of its
// queue, in their order, each while the actor's max_task_retries allows (Ray's semantics: the
// restarted instance runs them; a call may so run twice, once partly). The calls left in
// flight fail with ActorDiedError when the actor is unbound. Called before unbindActor on a
// restart, never on a death.
func (a *Agent) requeueCalls(ac *actor) {
	if ac.taskRetries == 0 || len(ac.inflight) == 0 {
		return
	}
	var keep, again []*task
	for _, t := range ac.inflight {
		if t.finished || ac.taskRetries > 0 && t.spec.Attempt >= ac.taskRetries {
			keep = append(keep, t)
			continue
		}
		t.spec.Attempt++
		t.worker = nil
		again = append(again, t)
	}
	if len(again) > 0 {
		a.log.Debug("actor restarting: its calls in flight will run again", "actor", ac.id.String(), "calls", len(again))
	}
	ac.inflight = keep
	ac.queue = append(again, ac.queue...)
}
