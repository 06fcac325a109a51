package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/rdma/nccl"
	"github.com/shoal-hpc/shoal/rdma/ucx"
)

// transportsCommand is `shoal transports`: which of the libraries that shoal opens at run time
// (UCX for RDMA, NCCL for GPU collectives) work on this node, and which path peers on other
// nodes would take.
func transportsCommand() *cli.Command {
	return &cli.Command{
		Name:  "transports",
		Usage: "show whether UCX (RDMA) and NCCL (GPU collectives) work on this node",
		UsageText: "shoal transports\n" +
			"shoal transports --json\n" +
			"SHOAL_UCX_LIB=/opt/ucx/lib/libucp.so.0 shoal transports   # another UCX build",
		Description: "Opens libucp.so.0 (SHOAL_UCX_LIB) and starts a UCX worker, opens libnccl.so.2\n" +
			"(SHOAL_NCCL_LIB) and the CUDA runtime (SHOAL_CUDART_LIB), and reads the RDMA ports\n" +
			"in sysfs. TCP always works; UCX carries traffic to other nodes when the data plane is\n" +
			"insecure (--insecure-data-plane: UCX cannot be encrypted) and this node has an ACTIVE\n" +
			"InfiniBand or RoCE port. Exit status 0 even when a library is missing.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_JSON"}, Usage: "print JSON"},
			&cli.StringFlag{Name: "sysfs-root", Value: "/sys", EnvVars: []string{"SHOAL_SYSFS_ROOT"},
				Usage: "where sysfs is mounted (tests point it at a fixture tree)"},
			&cli.BoolFlag{Name: "insecure-data-plane", EnvVars: []string{"SHOAL_INSECURE_DATA_PLANE"},
				Usage: "report for a cluster whose data plane is in clear (where UCX may be used)"},
		},
		Action: transportsAction,
	}
}

type backendReport struct {
	Available bool   `json:"available"`
	Version   string `json:"version,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Error     string `json:"error,omitempty"`
}

type transportsReport struct {
	UCX       backendReport `json:"ucx"`
	NCCL      backendReport `json:"nccl"`
	InterNode struct {
		Backend string `json:"backend"`
		Reason  string `json:"reason"`
	} `json:"inter_node"`
}

func transportsAction(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	var r transportsReport
	if v, err := ucx.Open(); err != nil {
		r.UCX.Error = err.Error()
	} else if t, err := ucx.New("probe", ucx.WithLogger(logger(c))); err != nil {
		r.UCX = backendReport{Version: v, Error: err.Error()}
	} else {
		t.Close()
		r.UCX = backendReport{Available: true, Version: v, Detail: "a UCX worker started"}
	}
	if l, err := nccl.Open(); err != nil {
		r.NCCL.Error = err.Error()
	} else if n, err := l.DeviceCount(); err != nil {
		r.NCCL = backendReport{Version: l.Version(), Error: err.Error()}
	} else {
		r.NCCL = backendReport{Available: n > 0, Version: l.Version(), Detail: fmt.Sprintf("%d GPU(s) visible", n)}
		if n == 0 {
			r.NCCL.Error = "no GPU visible to the CUDA runtime (check CUDA_VISIBLE_DEVICES)"
		}
	}
	prefer, why := ucx.Preferred(ucx.SysfsPorts(c.String("sysfs-root")))
	switch {
	case prefer && r.UCX.Available && !c.Bool("insecure-data-plane"):
		r.InterNode.Backend, r.InterNode.Reason = "tcp", why+", but the data plane is encrypted and UCX cannot be (--insecure-data-plane allows ucx)"
	case prefer && r.UCX.Available:
		r.InterNode.Backend, r.InterNode.Reason = "ucx", why
	case prefer:
		r.InterNode.Backend, r.InterNode.Reason = "tcp", why+", but UCX does not work here"
	default:
		r.InterNode.Backend, r.InterNode.Reason = "tcp", why
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	line := func(name, lib string, b backendReport) {
		switch {
		case b.Available:
			fmt.Printf("%-5s available      %s %s: %s\n", name, lib, b.Version, b.Detail)
		default:
			fmt.Printf("%-5s not available  %s\n", name, b.Error)
		}
	}
	fmt.Printf("%-5s available      always\n", "tcp")
	line("ucx", "UCX", r.UCX)
	line("nccl", "NCCL", r.NCCL)
	fmt.Printf("peers on other nodes: %s (%s)\n", r.InterNode.Backend, r.InterNode.Reason)
	return nil
}
