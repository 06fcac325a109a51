package launcher

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A member node's agent killed with SIGKILL leaves its object store (shoal-<id>-<node>) and its
// session directory (<id>-<node>, holding member.json); the epilog of that job removes both and
// nothing of another job.
func TestEpilogRemovesAKilledMembersStore(t *testing.T) {
	shm, tmp, proc := t.TempDir(), t.TempDir(), t.TempDir()
	mk := func(job, id string) (store, sess string) {
		store = filepath.Join(shm, "shoal-"+id+"-node3")
		sess = filepath.Join(tmp, "shoal-"+strconv.Itoa(os.Getuid()), id+"-node3")
		for _, d := range []string{store, filepath.Join(sess, "spill")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(store, "arena"), []byte("x"), 0o600)
		b, _ := json.Marshal(Info{ID: id, Dir: sess, StoreDir: store, SlurmJob: job, PID: 1 << 22})
		os.WriteFile(filepath.Join(sess, "member.json"), b, 0o600)
		return store, sess
	}
	store, sess := mk("42", "aaaaaaaaaaaa")
	otherStore, otherSess := mk("43", "bbbbbbbbbbbb")
	r := Epilog(hclog.NewNullLogger(), EpilogOptions{Job: "42", UID: os.Getuid(), TmpRoots: []string{tmp}, ShmRoot: shm, ProcRoot: proc,
		CgroupMounts: []CgroupMount{}, HomeDir: t.TempDir()})
	for _, p := range []string{store, sess} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("the epilog of job 42 left %s (report %+v)", p, r)
		}
	}
	for _, p := range []string{otherStore, otherSess} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the epilog of job 42 removed %s of job 43: %v", p, err)
		}
	}
}
