package yarn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/nodeagent"
	"github.com/shoal-hpc/shoal/sched"
)

// RunMember runs `shoal yarn agent` in a member container: it joins the head named by
// SHOAL_YARN_HEAD with the secret from the container's token file, offers the container's
// vcores and memory, runs the workers it is told to start, and returns when the head says
// STOP (0), the head goes away (1) or YARN stops the container (128+signal). Its workers never
// outlive it.
func RunMember(ctx context.Context, log hclog.Logger) (int, error) {
	headAddr := os.Getenv("SHOAL_YARN_HEAD")
	me := os.Getenv("CONTAINER_ID")
	if headAddr == "" || me == "" {
		return 2, errors.New("SHOAL_YARN_HEAD or CONTAINER_ID is not set: `shoal yarn agent` runs only in a container the shoal ApplicationMaster started")
	}
	secret, err := secretFromTokenFile()
	if err != nil {
		return 2, err
	}
	mem, _ := strconv.ParseInt(os.Getenv("SHOAL_YARN_MEMORY_MB"), 10, 64)
	vcores, _ := strconv.Atoi(os.Getenv("SHOAL_YARN_VCORES"))
	timeout := time.Minute
	if ms, err := strconv.ParseInt(os.Getenv("SHOAL_YARN_JOIN_TIMEOUT_MS"), 10, 64); err == nil && ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	// the container's share, as YARN granted it, not the whole machine
	rep, err := launcher.Describe(log, launcher.Options{NumCPUs: float64(vcores), Memory: mem << 20})
	if err != nil {
		return 1, err
	}
	offer := sched.Resources{}
	for k, v := range rep.Offer {
		if k != "object_store_memory" && k != "GPU" { // as `shoal launch` members: no store, no GPUs yet
			offer[k] = v
		}
	}
	host := os.Getenv("NM_HOST")
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	m, sig, err := nodeagent.JoinRetry(ctx, log.Named("member"), nodeagent.MemberConfig{HeadAddr: headAddr, Secret: secret,
		Node: me, Addr: host, Resources: offer}, time.Now().Add(timeout), 200*time.Millisecond, sigs)
	if sig != nil {
		return 128 + int(sig.(syscall.Signal)), nil
	}
	if err != nil {
		return 1, fmt.Errorf("join the head at %s: %w", headAddr, err)
	}
	log.Info("joined the head", "head", headAddr, "node", me, "offer", offer.String())
	code, sig, err := m.Serve(ctx, sigs)
	switch {
	case sig != nil:
		log.Info("stopped by signal", "signal", sig.String())
		return 128 + int(sig.(syscall.Signal)), nil
	case err != nil:
		return 1, err
	}
	log.Info("the head stopped the cluster", "driver_code", code)
	return 0, nil // this container did its part, whatever the driver's code
}
