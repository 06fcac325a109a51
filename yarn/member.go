package yarn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/launcher"
	"github.com/shoal-hpc/shoal/sched"
)

// RunMember runs `shoal yarn agent` in a member container: it joins the head named by
// SHOAL_YARN_HEAD with the secret from the container's token file, offers the container's
// vcores and memory (with an object store and the GPUs NVML finds, as a Slurm member does:
// launcher.RunMember is the one member path), runs the workers it is told to start, and
// returns when the head says STOP (0), the head goes away (1) or YARN stops the container
// (128+signal). Its workers never outlive it.
func RunMember(ctx context.Context, log hclog.Logger) (int, error) {
	headAddr := os.Getenv("SHOAL_YARN_HEAD")
	me := os.Getenv("CONTAINER_ID")
	cluster := os.Getenv("SHOAL_YARN_CLUSTER")
	if headAddr == "" || me == "" || cluster == "" {
		return 2, errors.New("SHOAL_YARN_HEAD, SHOAL_YARN_CLUSTER or CONTAINER_ID is not set: `shoal yarn agent` runs only in a container the shoal ApplicationMaster started")
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
	o := launcher.Options{NumCPUs: float64(vcores), Memory: mem << 20,
		InsecureDataPlane: os.Getenv("SHOAL_INSECURE_DATA_PLANE") == "1"}
	code, sig, err := launcher.RunMember(ctx, log, o, launcher.MemberSpec{Cluster: cluster, HeadAddr: headAddr, Secret: secret,
		Node: me, Addr: os.Getenv("NM_HOST"), Joined: func(offer sched.Resources, gpus []int) {
			log.Info("joined the head", "head", headAddr, "node", me, "offer", offer.String(), "gpus", gpus)
		}}, time.Now().Add(timeout), 200*time.Millisecond)
	switch {
	case sig != nil:
		log.Info("stopped by signal", "signal", sig.String())
		return 128 + int(sig.(syscall.Signal)), nil
	case err != nil:
		return 1, fmt.Errorf("member of the cluster at %s: %w", headAddr, err)
	}
	log.Info("the head stopped the cluster", "driver_code", code)
	return 0, nil // this container did its part, whatever the driver's code
}
