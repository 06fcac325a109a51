package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// AMRMToken roll-over needs an RM that rolls its master key within seconds,
// which the shared harness does not (YARN's default is a day). This test starts
// its own MiniYARNCluster from the harness's jar (test/yarn, built by
// test/yarn/minicluster.sh build) with a yarn-site.xml ahead on the class path:
// the key rolls every 26 s and is activated 12 s later (1.5 x the 8 s AM
// expiry; YARN wants that delay under half the interval). After activation
// the old token is refused.
const (
	rollIntervalSecs = 26
	amExpiryMS       = 8000
)

func TestYARNAMRMTokenRollOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own MiniYARNCluster (about a minute); skipped with -short")
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
	dir := t.TempDir()
	web, scheduler := startCluster(t, dir, jar+":"+strings.TrimSpace(string(cp)), map[string]string{
		"yarn.resourcemanager.am-rm-tokens.master-key-rolling-interval-secs": strconv.Itoa(rollIntervalSecs),
		"yarn.am.liveness-monitor.expiry-interval-ms":                        strconv.Itoa(amExpiryMS),
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := runApp(ctx, t, web, dir, map[string]string{"SHOAL_YARN_SCHEDULER_ADDRESS": scheduler, "SHOAL_IPC_HELPER_MODE": "roll"})
	amLog := readFile(dir, "am.log")
	if st.State != "FINISHED" || st.FinalStatus != "SUCCEEDED" {
		t.Fatalf("application %s: state %s, final status %s, diagnostics %q; AM log:\n%s", st.ID, st.State, st.FinalStatus, st.Diagnostics, amLog)
	}
	var res rollResult
	if err := json.Unmarshal([]byte(readFile(dir, "result.json")), &res); err != nil {
		t.Fatalf("AM result: %v; AM log:\n%s", err, amLog)
	}
	if !res.Rolled {
		t.Fatalf("the AMRMToken never changed; AM log:\n%s", amLog)
	}
	if res.HeartbeatsAfterRoll < 10 {
		t.Errorf("only %d heartbeats after the roll", res.HeartbeatsAfterRoll)
	}
	if !strings.Contains(res.OldTokenError, "token authentication failed") {
		t.Errorf("after activation the old token gave %q, want an authentication error (else the test proves nothing)", res.OldTokenError)
	}
	if res.NewTokenDial != "" {
		t.Errorf("a fresh connection with the new token failed: %s", res.NewTokenDial)
	}
	t.Logf("AM log:\n%s", amLog)
}

type rollResult struct {
	Rolled              bool
	HeartbeatsAfterRoll int
	OldTokenError       string // DialAMRM with the first token, after the new key is active
	NewTokenDial        string // DialAMRM with the current token: "" when it worked
}

// runRollAM heartbeats until the RM rolls the AMRMToken, keeps heartbeating
// past the new key's activation (so the client must have switched), then
// checks that the old token is refused and the new one accepted.
func runRollAM(log hclog.Logger) (*rollResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	creds, err := ReadTokenFile(os.Getenv("HADOOP_TOKEN_FILE_LOCATION"))
	if err != nil {
		return nil, err
	}
	first, ok := creds.ByKind(KindAMRMToken)
	if !ok {
		return nil, fmt.Errorf("no %s in the token file", KindAMRMToken)
	}
	scheduler := os.Getenv("SHOAL_YARN_SCHEDULER_ADDRESS")
	am, err := DialAMRM(ctx, scheduler, "", first, log)
	if err != nil {
		return nil, err
	}
	defer am.Close()
	if _, err := am.Register(ctx, "", 0, ""); err != nil {
		return nil, err
	}
	res := &rollResult{}
	activation := time.Duration(amExpiryMS*3/2) * time.Millisecond
	var rolledAt time.Time
	deadline := time.Now().Add(3 * rollIntervalSecs * time.Second)
	for {
		if _, err := am.Allocate(ctx, nil, nil, 0.5); err != nil {
			return nil, fmt.Errorf("heartbeat (%d after the roll): %w", res.HeartbeatsAfterRoll, err)
		}
		if !res.Rolled && !bytes.Equal(am.AMRMToken().Password, first.Password) {
			res.Rolled, rolledAt = true, time.Now()
			log.Info("AMRMToken rolled")
		}
		if res.Rolled {
			res.HeartbeatsAfterRoll++
			if time.Since(rolledAt) > activation+2*time.Second {
				break
			}
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("no AMRMToken roll-over in %s", 3*rollIntervalSecs*time.Second)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := DialAMRM(ctx, scheduler, "", first, log); err == nil {
		res.OldTokenError = "(accepted)"
	} else {
		res.OldTokenError = err.Error()
		if !errors.Is(err, ErrAuth) {
			res.OldTokenError = "not ErrAuth: " + err.Error()
		}
	}
	if c, err := DialAMRM(ctx, scheduler, "", am.AMRMToken(), log); err != nil {
		res.NewTokenDial = err.Error()
	} else {
		c.Close()
	}
	if _, err := am.Finish(ctx, Succeeded, "roll-over test done", ""); err != nil {
		return nil, err
	}
	return res, nil
}

// startCluster runs a MiniYARNCluster of its own under dir, with props in a
// yarn-site.xml and a core-site.xml ahead of the harness on the class path, and
// returns the RM web and scheduler addresses; it stops with the test.
func startCluster(t *testing.T, dir, classpath string, props map[string]string) (web, scheduler string) {
	t.Helper()
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	var xml strings.Builder
	xml.WriteString("<?xml version=\"1.0\"?>\n<configuration>\n")
	for _, k := range sortedKeys(props) {
		fmt.Fprintf(&xml, "  <property><name>%s</name><value>%s</value></property>\n", k, props[k])
	}
	xml.WriteString("</configuration>\n")
	for _, name := range []string{"yarn-site.xml", "core-site.xml"} {
		if err := os.WriteFile(filepath.Join(site, name), []byte(xml.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := freeBase(t)
	logf, err := os.Create(filepath.Join(dir, "minicluster.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command("java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true",
		"-cp", site+":"+classpath, "shoal.yarntest.MiniCluster", "--out", dir, "--base-port", strconv.Itoa(base),
		"--nodemanagers", "2", "--nm-memory-mb", "1024", "--nm-vcores", "2", "--stop-on-eof")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start MiniYARNCluster: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close() // --stop-on-eof
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("MiniYARNCluster exited (%v) before it was ready:\n%s", err, tail(filepath.Join(dir, "minicluster.log")))
		case <-time.After(200 * time.Millisecond):
		}
		if i > 5*240 {
			t.Fatalf("MiniYARNCluster not ready in 4 minutes:\n%s", tail(filepath.Join(dir, "minicluster.log")))
		}
	}
	return fmt.Sprintf("http://127.0.0.1:%d", base+58), fmt.Sprintf("127.0.0.1:%d", base)
}

// freeBase finds a base port whose ports (base..base+3, base+58) are free.
func freeBase(t *testing.T) int {
	for base := 19130; base < 21000; base += 100 {
		free := true
		for _, off := range []int{0, 1, 2, 3, 58} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range for a MiniYARNCluster")
	return 0
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
