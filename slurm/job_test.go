package slurm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseJob(t *testing.T) {
	for _, tc := range []struct {
		file, state, stdout, command string
		restarts                     int
		preempted                    bool
	}{
		// records `scontrol show job -o` printed on the test cluster: during a preemption's
		// grace time, after scancel (with a command path that has spaces), after the grace time
		{"preempted", "RUNNING", "/tmp/pe/w/low.out", "/tmp/pe/w/low.sbatch", 0, true},
		{"cancelled", "CANCELLED", "/tmp/pe/w/low.out", "/tmp/my jobs/run it.sbatch", 0, false},
		{"grace-over", "COMPLETING", "/tmp/pe/w/low.out", "/tmp/pe/w/low.sbatch", 2, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "job", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			j, err := ParseJob(f)
			if err != nil {
				t.Fatal(err)
			}
			if j.ID != "1" || j.State != tc.state || j.StdOut != tc.stdout || j.Fields["Command"] != tc.command ||
				j.Restarts != tc.restarts || j.Preempted() != tc.preempted || !j.Requeue || j.Partition != "preemptible" ||
				j.Fields["AllocNode:Sid"] != "localhost:8153" || j.Fields["Power"] != "" {
				t.Errorf("got %+v", j)
			}
		})
	}
}

func TestParseJobRejects(t *testing.T) {
	for _, in := range []string{"", "slurm_load_jobs error: Invalid job id specified\n", "JobId=3 Partition=x\n",
		"JobId=3 JobState=RUNNING Restarts=x\n", "JobId=3 JobState=RUNNING Restarts=-1\n"} {
		if _, err := ParseJob(strings.NewReader(in)); !errors.Is(err, ErrJobRecord) {
			t.Errorf("ParseJob(%q): %v, want ErrJobRecord", in, err)
		}
	}
}

func FuzzParseJob(f *testing.F) {
	for _, n := range []string{"preempted", "cancelled", "grace-over"} {
		b, err := os.ReadFile(filepath.Join("testdata", "job", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := ParseJob(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrJobRecord) {
				t.Fatalf("error %v does not wrap ErrJobRecord", err)
			}
			return
		}
		if j.ID == "" || j.State == "" || j.Restarts < 0 {
			t.Fatalf("accepted %q as %+v", s, j)
		}
		if j.Preempted() && j.State != "RUNNING" {
			t.Fatalf("preempted in state %s", j.State)
		}
	})
}
