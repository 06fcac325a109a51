package nodeagent

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/shoal-hpc/shoal/sched"
)

func TestLogicalGPUs(t *testing.T) {
	for _, tc := range []struct {
		gpus []int
		res  sched.Resources
		want []int
	}{
		{nil, sched.Resources{"CPU": 4, "GPU": 2}, []int{0, 1}}, // --num-gpus 2 on a machine without GPUs
		{[]int{3}, sched.Resources{"GPU": 2}, []int{3}},         // devices found: they stand
		{nil, sched.Resources{"CPU": 4}, nil},                   // no GPUs offered
		{nil, sched.Resources{"GPU": 0.5}, nil},                 // less than one GPU: none to index
	} {
		if got := logicalGPUs(tc.gpus, tc.res); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("logicalGPUs(%v, %v) = %v, want %v", tc.gpus, tc.res, got, tc.want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	if c := errorCode(fmt.Errorf("cancel: %w", errInvalid{"force"})); c != "value_error" {
		t.Fatalf("a wrapped errInvalid answers %q, want value_error", c)
	}
	if c := errorCode(fmt.Errorf("other")); c != "bad_request" {
		t.Fatalf("another error answers %q, want bad_request", c)
	}
}
