package objstore

import (
	"sort"

	"github.com/shoal-hpc/shoal/wire"
)

// Listed is one object of the store as the state API shows it (ray.util.state.list_objects).
type Listed struct {
	ID      wire.ID
	Fmt     int
	State   State
	Size    int64
	Spilled bool
	Inline  bool
	Loc     string   // the transfer address of the node holding the bytes ("": here)
	Holders []uint64 // connections holding a reference, sorted
	Pins    int      // tasks and objects pinning it
	Uses    int      // mappings not yet released
}

// List returns every object of the store, by id. The caller holds the lock that guards the
// store.
func (s *Store) List() []Listed {
	out := make([]Listed, 0, len(s.objs))
	for id, o := range s.objs {
		l := Listed{ID: id, Fmt: o.Fmt, State: o.State, Size: o.Size, Spilled: o.spilled, Inline: o.Path == "" && o.Loc == "",
			Loc: o.Loc, Pins: o.pins}
		if l.Inline && l.Size == 0 {
			l.Size = int64(len(o.Inline))
		}
		for h, n := range o.refs {
			if n > 0 {
				l.Holders = append(l.Holders, h)
			}
		}
		sort.Slice(l.Holders, func(i, j int) bool { return l.Holders[i] < l.Holders[j] })
		for _, n := range o.uses {
			l.Uses += n
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].ID[:]) < string(out[j].ID[:]) })
	return out
}
