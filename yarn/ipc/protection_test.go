package ipc

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestYARNRPCProtection runs the ApplicationMaster of TestYARNApplicationMaster on
// MiniYARNClusters of its own whose hadoop.rpc.protection is integrity, then privacy: the
// client must negotiate the SASL security layer (auth-int, auth-conf) with the RM and the
// NodeManagers, every call must go through wrapped, each container's token file must hold the
// secret key the AM gave it, and with privacy the secret must not be in the bytes the AM sent
// the NodeManager (it is under authentication and integrity: see TestYARNApplicationMaster).
func TestYARNRPCProtection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own MiniYARNClusters (about 30 s each); skipped with -short")
	}
	harness, _ := filepath.Abs("../../test/yarn/target")
	jar := filepath.Join(harness, "shoal-yarn-minicluster-1.jar")
	cp, err := os.ReadFile(filepath.Join(harness, "classpath.txt"))
	if err != nil {
		t.Skipf("no MiniYARNCluster harness built (%v); build it with test/yarn/minicluster.sh build", err)
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("no java: install JDK 17 (scripts/deps.sh)")
	}
	for _, level := range []string{"integrity", "privacy"} {
		t.Run(level, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "payload.txt"), []byte("shipped by the NodeManager\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			web, scheduler := startCluster(t, dir, jar+":"+strings.TrimSpace(string(cp)),
				map[string]string{"hadoop.rpc.protection": level})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			st := runApp(ctx, t, web, dir, map[string]string{"SHOAL_YARN_SCHEDULER_ADDRESS": scheduler})
			amLog := readFile(dir, "am.log")
			if st.State != "FINISHED" || st.FinalStatus != "SUCCEEDED" {
				t.Fatalf("application %s: state %s, final status %s, diagnostics %q; AM log:\n%s",
					st.ID, st.State, st.FinalStatus, st.Diagnostics, amLog)
			}
			var res amResult
			if err := json.Unmarshal([]byte(readFile(dir, "result.json")), &res); err != nil {
				t.Fatalf("AM result: %v; AM log:\n%s", err, amLog)
			}
			if len(res.Allocated) != 2 || len(res.Completed) != 2 || res.StoppedID == "" || len(res.Redialed) != 2 || !res.Unregistered {
				t.Errorf("the AM's run: %+v", res)
			}
			for what, msg := range map[string]string{"AMRM": res.WrongAMRMAuth, "NM": res.WrongNMAuth} {
				if !strings.Contains(msg, "token authentication failed") {
					t.Errorf("a wrong %s token gave %q, want an authentication error", what, msg)
				}
			}
			checkTokens(t, dir, res, level)
			if onWire, want := res.SecretOnWire, level != "privacy"; onWire != want {
				t.Errorf("secret in the bytes sent to the NodeManager: %v, want %v", onWire, want)
			}
			t.Logf("AM log:\n%s", amLog)
		})
	}
}
