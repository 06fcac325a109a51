package slurm

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxCounts is the most values ExpandCounts returns. It is far above any node count a
// cluster has, and keeps "1(x4000000000)" from exhausting memory.
const MaxCounts = 1 << 20

func countsError(s, format string, args ...any) error {
	return fmt.Errorf("parse count list %q: %w", s,
		&detailError{msg: fmt.Sprintf(format, args...), sentinel: ErrCounts})
}

// ExpandCounts expands a compressed count list as Slurm writes SLURM_JOB_CPUS_PER_NODE and
// SLURM_TASKS_PER_NODE: comma-separated items, each a count N or N(xR) for R nodes in a row
// with count N, in node list order. "2(x3),1" gives [2 2 2 1].
//
// Counts are decimal numbers that fit in 32 bits, R is at least 1, and there is no
// whitespace. Errors wrap ErrCounts.
func ExpandCounts(s string) ([]int, error) {
	if s == "" {
		return nil, countsError(s, "empty")
	}
	var out []int
	for _, item := range strings.Split(s, ",") {
		value, reps, err := parseCountItem(s, item)
		if err != nil {
			return nil, err
		}
		if reps > MaxCounts-uint64(len(out)) {
			return nil, countsError(s, "stands for more than %d values", MaxCounts)
		}
		for range reps {
			out = append(out, value)
		}
	}
	return out, nil
}

// parseCountItem parses "N" or "N(xR)".
func parseCountItem(s, item string) (value int, reps uint64, err error) {
	if item == "" {
		return 0, 0, countsError(s, "empty item")
	}
	num, rest, hasReps := strings.Cut(item, "(x")
	v, err := parseCount(num)
	if err != nil {
		return 0, 0, countsError(s, "item %q: count %q is not a number from 0 to 4294967295", item, num)
	}
	if !hasReps {
		return v, 1, nil
	}
	repText, ok := strings.CutSuffix(rest, ")")
	r, err := parseCount(repText)
	if !ok || err != nil {
		return 0, 0, countsError(s, "item %q is not of the form N or N(xR), with R a number from 1 to 4294967295", item)
	}
	if r == 0 {
		return 0, 0, countsError(s, "item %q repeats zero times", item)
	}
	return v, uint64(r), nil
}

// parseCount parses a decimal number of at most 32 bits, digits only.
func parseCount(s string) (int, error) {
	if !isDigits(s) {
		return 0, strconv.ErrSyntax
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, err
	}
	return int(v), nil
}
