package nodeagent

import (
	"strings"
	"testing"
)

func TestStateFilters(t *testing.T) {
	row := stateRow{"state": "ALIVE", "name": "svc", "pid": 1234, "is_head_node": true, "node_id": nil, "size": 1.5}
	for _, c := range []struct {
		filters [][]string
		want    bool
	}{
		{nil, true},
		{[][]string{{"state", "=", "ALIVE"}}, true},
		{[][]string{{"state", "=", "alive"}}, true}, // case-insensitive, as Ray's
		{[][]string{{"state", "!=", "alive"}}, false},
		{[][]string{{"state", "=", "DEAD"}}, false},
		{[][]string{{"pid", "=", "1234"}}, true}, // an int compares as its string
		{[][]string{{"is_head_node", "=", "True"}}, true},
		{[][]string{{"node_id", "=", ""}}, true}, // a missing value is ""
		{[][]string{{"node_id", "!=", ""}}, false},
		{[][]string{{"size", "=", "1.5"}}, true},
		{[][]string{{"state", "=", "ALIVE"}, {"name", "=", "other"}}, false}, // all must hold
	} {
		if got := matches(row, c.filters); got != c.want {
			t.Errorf("matches(%q) = %v, want %v", c.filters, got, c.want)
		}
	}
}

func TestStateFilterErrors(t *testing.T) {
	cols := stateColumns["actors"]
	for _, c := range []struct {
		filters [][]string
		want    string // "" for no error
	}{
		{[][]string{{"state", "=", "ALIVE"}}, ""},
		{[][]string{{"colour", "=", "red"}}, "available columns: actor_id"},
		{[][]string{{"state", ">", "x"}}, "use = or !="},
		{[][]string{{"state", "="}}, "(column, predicate, value)"},
	} {
		err := checkFilters("actors", c.filters, cols)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("checkFilters(%q) = %v, want an error containing %q", c.filters, err, c.want)
		}
	}
}

func TestTaskNames(t *testing.T) {
	for _, c := range []struct {
		kind              int
		name, actor, want string
	}{
		{0, "f", "", "f"},
		{2, "A.m", "", "A.m"},
		{1, "A", "", "A.__init__"},
		{1, "A", "svc", "svc:A.__init__"},
	} {
		if got := taskName(c.kind, c.name, c.actor); got != c.want {
			t.Errorf("taskName(%d, %q, %q) = %q, want %q", c.kind, c.name, c.actor, got, c.want)
		}
	}
}
