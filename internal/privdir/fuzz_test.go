package privdir

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSessionName: whatever a directory listing holds, a name taken for a session is one path
// element that cannot climb out of the base.
func FuzzSessionName(f *testing.F) {
	for _, s := range []string{"0123456789ab", "0123456789ab-node2", "0123456789ab-a.b_c-d", "..", ".", "", "0123456789ab/..",
		"0123456789ab-../x", "0123456789AB", "0123456789ab-", "0123456789ab-.hidden"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !ValidSessionName(name) {
			return
		}
		if checkName(name) != nil || strings.ContainsAny(name, "/\x00\n") {
			t.Fatalf("%q accepted as a session name", name)
		}
		if len(name) < 12 || strings.ToLower(name[:12]) != name[:12] {
			t.Fatalf("%q accepted without a 12-digit lowercase id", name)
		}
	})
}

// FuzzNotedPath: a sweep removes only what a dead session could have noted, read back from a
// leftover-N file: an absolute path named shoal-<session>, never / or a path with .. in it.
func FuzzNotedPath(f *testing.F) {
	for _, c := range [][2]string{
		{"/dev/shm/shoal-0123456789ab", "0123456789ab"},
		{"/dev/shm/shoal-0123456789ab-node2", "0123456789ab-node2"},
		{"/dev/shm/../etc/shoal-0123456789ab", "0123456789ab"},
		{"/", "0123456789ab"},
		{"dev/shm/shoal-0123456789ab", "0123456789ab"},
		{"/dev/shm/shoal-..", ".."},
		{"/dev/shm/shoal-0123456789ab/", "0123456789ab"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, p, name string) {
		if !notedPathOK(p, name) {
			return
		}
		if !filepath.IsAbs(p) || strings.Contains(p, "/../") || filepath.Dir(p) == p ||
			filepath.Join(filepath.Dir(p), "shoal-"+name) != p {
			t.Fatalf("noted path %q of session %q accepted", p, name)
		}
	})
}
