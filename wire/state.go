package wire

// TState asks the head node's agent for the head's tables (no body); the OK reply carries
// head.State: the cluster, its nodes, jobs, actors and placement groups as SQLite holds them
// (docs/architecture.md, "Head state"). `shoal status` sends it. A member agent, which keeps no
// head, answers with an error of code "no_head".
const TState Type = 43
