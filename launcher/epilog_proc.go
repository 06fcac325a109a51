package launcher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// What /proc/<pid>/{environ,stat,status} say about a process. A process's files are written by
// the kernel, but its environment and its command (in stat) are the process's own: any user
// can put anything there, so the parsers bound what they read and never fail on odd bytes.

const (
	maxEnviron = 1 << 20 // the kernel's own limit on a process's environment is far lower in practice
	maxProcTxt = 64 << 10
)

// ErrProcFormat is wrapped by the errors of the /proc parsers for input they cannot read.
var ErrProcFormat = errors.New("unexpected /proc file format")

// ParseEnviron reads a /proc/<pid>/environ: NUL-separated NAME=VALUE strings. Strings without
// '=' are skipped (a process may rewrite its environment area with anything); a name seen twice
// keeps its first value, as getenv(3) does. At most 1 MiB is read: a longer environment is
// parsed up to there, and the error says it was cut.
func ParseEnviron(r io.Reader) (map[string]string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxEnviron+1))
	if err != nil {
		return nil, fmt.Errorf("read environ: %w", err)
	}
	var cut error
	if len(b) > maxEnviron {
		b = b[:maxEnviron]
		cut = fmt.Errorf("environ longer than %d bytes: %w", maxEnviron, ErrProcFormat)
	}
	env := map[string]string{}
	for len(b) > 0 {
		var kv []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			kv, b = b[:i], b[i+1:]
		} else {
			kv, b = b, nil
		}
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok || len(k) == 0 {
			continue
		}
		if _, seen := env[string(k)]; !seen {
			env[string(k)] = string(v)
		}
	}
	return env, cut
}

// procStat is what the epilog reads from /proc/<pid>/stat.
type procStat struct {
	State byte   // R, S, D, Z, ...
	PPID  int    //
	Start uint64 // field 22, starttime in clock ticks since boot: with the pid, it names one process
}

// parseStat reads /proc/<pid>/stat. The command (field 2) is in parentheses and may itself hold
// spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(r io.Reader) (procStat, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxProcTxt))
	if err != nil {
		return procStat{}, fmt.Errorf("read stat: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat has no command: %w", ErrProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	// after the command: state(3) ppid(4) ... starttime(22)
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat has %d fields after the command: %w", len(f), ErrProcFormat)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat ppid %q: %w", f[1], ErrProcFormat)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat starttime %q: %w", f[19], ErrProcFormat)
	}
	return procStat{State: f[0][0], PPID: ppid, Start: start}, nil
}

// parseRealUID reads the real uid (the first of the four on the Uid: line) from a
// /proc/<pid>/status. The real uid, not the effective one: a setuid program run by another user
// keeps that user's real uid, and the file's owner (the effective uid) can be changed by the
// process.
func parseRealUID(r io.Reader) (int, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxProcTxt))
	if err != nil {
		return -1, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return -1, fmt.Errorf("status Uid %q: %w", f[0], ErrProcFormat)
		}
		return int(uid), nil
	}
	return -1, fmt.Errorf("status has no Uid line: %w", ErrProcFormat)
}

// isClusterCommand reports whether a command line is a shoal process that holds a cluster
// (`shoal launch`, `shoal run`, `shoal serve`), as opposed to, say, another node's epilog.
func isClusterCommand(cmdline []byte) bool {
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) < 2 {
		return false
	}
	if base := argv[0][strings.LastIndexByte(argv[0], '/')+1:]; base != "shoal" {
		return false
	}
	for _, a := range argv[1:] {
		switch a {
		case "launch", "run", "serve", "up":
			return true
		case "admin", "--":
			return false
		}
	}
	return false
}
