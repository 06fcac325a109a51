// Package obs is what a user sees of a running shoal cluster besides `shoal status`: the
// head node's agent records every task and actor call (Recorder), and an HTTP server (Server)
// serves, behind a per-cluster token, Prometheus metrics (/metrics), a Chrome-trace timeline,
// the end-of-job report and the dashboard page built into the binary.
//
// Event flow:
//
//	agent core ──TaskEvent──> Recorder (own mutex; bounded table of tasks; counters, histograms)
//	                                │
//	Server ── /metrics, /api/* ─────┤  scrape: Recorder's counters + Source.Snapshot() gauges
//	`shoal timeline`, shoal.timeline() ──(wire OBSERVE)──> Recorder.Timeline
//	`shoal run` / `shoal launch` exit ─────────────────> Recorder.Report
//
// A nil *Recorder is valid and records nothing, so that observability can be switched off
// (--observability=off) at the cost of one nil check per event. The Recorder never calls back
// into the agent; Source.Snapshot is called by the Server without the Recorder's lock held.
package obs
