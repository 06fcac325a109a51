package fingerprint

import (
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hostFingerprint reports the host name, from procfs so fixture trees can set it.
type hostFingerprint struct {
	logger hclog.Logger
	fsys   fs.FS
}

var _ Fingerprinter = (*hostFingerprint)(nil)

func newHost(logger hclog.Logger, fsys fs.FS) Fingerprinter {
	return &hostFingerprint{logger: logger, fsys: fsys}
}

func (f *hostFingerprint) Fingerprint(_ *Request, resp *Node) error {
	const file = "/proc/sys/kernel/hostname"
	if b, err := readFile(f.fsys, file); err == nil && strings.TrimSpace(string(b)) != "" {
		resp.Hostname = strings.TrimSpace(string(b))
		return nil
	} else if err != nil {
		f.logger.Debug("no host name in procfs, asking the os", "path", file, "error", err)
	}
	name, err := os.Hostname()
	if err != nil {
		f.logger.Warn("no host name", "error", err)
		return nil
	}
	resp.Hostname = name
	return nil
}
