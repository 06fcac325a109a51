package nodeagent

import (
	"fmt"
	"path/filepath"

	"github.com/shoal-hpc/shoal/wire"
)

// Runtime environments (Ray's runtime_env, docs/runtime-env.md). The SDK prepares them: it
// packs a working_dir or py_module once and puts the package in the object store, and it
// sends the prepared environment in the task spec (Renv, JSON) with its key (RenvKey, a
// content hash). The agent only checks their shape and hands the key to the core, which
// keys worker pools by it (sched poolKey) so that tasks of different environments never
// share a process; the worker applies the environment, unpacking packages into a per-node
// cache through the object store (members' workers pull them as any object).

// maxRenv bounds a task's prepared runtime environment (it travels with every task).
const maxRenv = 64 << 10

// checkRuntimeEnv refuses a task whose runtime environment fields are malformed.
func checkRuntimeEnv(m *wire.Task) error {
	if (len(m.Renv) == 0) != (m.RenvKey == "") {
		return fmt.Errorf("task %s: a runtime_env needs both its spec and its key (renv %d bytes, key %q); upgrade the SDK to the agent's version", m.Name, len(m.Renv), m.RenvKey)
	}
	if len(m.Renv) > maxRenv {
		return fmt.Errorf("task %s: its runtime_env is %d bytes, more than %d: ship large env_vars values as files in working_dir", m.Name, len(m.Renv), maxRenv)
	}
	if len(m.RenvKey) > 64 {
		return fmt.Errorf("task %s: runtime_env key of %d bytes; at most 64", m.Name, len(m.RenvKey))
	}
	for _, r := range m.RenvKey {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return fmt.Errorf("task %s: runtime_env key %q is not lower-case hex", m.Name, m.RenvKey)
		}
	}
	return nil
}

// runtimeEnvDir is the worker environment entry naming the node's runtime_env cache: a
// directory in the node's session directory, so that packages and pip installs are unpacked
// once per node and cluster, and go with the session when the cluster ends. Without it (a
// member without a session directory) a worker uses <tmp>/shoal-<uid>/runtime_env.
func runtimeEnvDir(sessionDir string) string {
	return "SHOAL_RUNTIME_ENV_DIR=" + filepath.Join(sessionDir, "runtime_env")
}
