package slurm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestExpandCounts(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"1", []int{1}},
		{"0", []int{0}},
		{"2(x3),1", []int{2, 2, 2, 1}},
		{"2(x2),1", []int{2, 2, 1}},
		{"72(x2)", []int{72, 72}},
		{"4,8,4", []int{4, 8, 4}},
		{"1(x1)", []int{1}},
		{"4294967295", []int{4294967295}},
		{"3(x2),1,5(x3)", []int{3, 3, 1, 5, 5, 5}},
	}
	for _, tt := range tests {
		got, err := ExpandCounts(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ExpandCounts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestExpandCountsErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `parse count list "": empty`},
		{"2,,1", `parse count list "2,,1": empty item`},
		{"2,", `parse count list "2,": empty item`},
		{"x", `parse count list "x": item "x": count "x" is not a number from 0 to 4294967295`},
		{"-1", `parse count list "-1": item "-1": count "-1" is not a number from 0 to 4294967295`},
		{" 2", `parse count list " 2": item " 2": count " 2" is not a number from 0 to 4294967295`},
		{"4294967296", `parse count list "4294967296": item "4294967296": count "4294967296" is not a number from 0 to 4294967295`},
		{"2(x3", `parse count list "2(x3": item "2(x3" is not of the form N or N(xR), with R a number from 1 to 4294967295`},
		{"2(3)", `parse count list "2(3)": item "2(3)": count "2(3)" is not a number from 0 to 4294967295`},
		{"2(x)", `parse count list "2(x)": item "2(x)" is not of the form N or N(xR), with R a number from 1 to 4294967295`},
		{"2(x3)4", `parse count list "2(x3)4": item "2(x3)4" is not of the form N or N(xR), with R a number from 1 to 4294967295`},
		{"2(x0)", `parse count list "2(x0)": item "2(x0)" repeats zero times`},
		{"1(x4000000000)", `parse count list "1(x4000000000)": stands for more than 1048576 values`},
		{"1(x1048576),1", `parse count list "1(x1048576),1": stands for more than 1048576 values`},
	}
	for _, tt := range tests {
		got, err := ExpandCounts(tt.in)
		if err == nil {
			t.Errorf("ExpandCounts(%q) = %v, want error %q", tt.in, got, tt.want)
			continue
		}
		if !errors.Is(err, ErrCounts) || err.Error() != tt.want {
			t.Errorf("ExpandCounts(%q) error\n got: %v\nwant: %s (wrapping ErrCounts)", tt.in, err, tt.want)
		}
	}
}

// compressCounts writes counts the way Slurm does: N, or N(xR) for a run of R > 1.
func compressCounts(counts []int) string {
	var parts []string
	for i := 0; i < len(counts); {
		j := i + 1
		for j < len(counts) && counts[j] == counts[i] {
			j++
		}
		if j-i > 1 {
			parts = append(parts, fmt.Sprintf("%d(x%d)", counts[i], j-i))
		} else {
			parts = append(parts, fmt.Sprint(counts[i]))
		}
		i = j
	}
	return strings.Join(parts, ",")
}

func FuzzExpandCounts(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzExpandCounts.
	f.Fuzz(func(t *testing.T, s string) {
		counts, err := ExpandCounts(s)
		if err != nil {
			if !errors.Is(err, ErrCounts) {
				t.Fatalf("ExpandCounts(%q) error %v does not wrap ErrCounts", s, err)
			}
			return
		}
		if len(counts) == 0 || len(counts) > MaxCounts {
			t.Fatalf("ExpandCounts(%q) gave %d values", s, len(counts))
		}
		for _, c := range counts {
			if c < 0 || c > 1<<32-1 {
				t.Fatalf("ExpandCounts(%q) gave value %d", s, c)
			}
		}
		c := compressCounts(counts)
		again, err := ExpandCounts(c)
		if err != nil || !slices.Equal(again, counts) {
			t.Fatalf("ExpandCounts(%q) = %v, %v; want %v", c, again, err, counts)
		}
	})
}
