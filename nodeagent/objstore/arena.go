package objstore

import (
	"os"
	"sort"
)

// PageSize is the alignment of every object in the arena, so that a client can map one object
// alone (mmap offsets must be page aligned): at least 4 KiB, more on 64 KiB-page machines.
var PageSize = int64(max(4096, os.Getpagesize()))

type span struct{ off, len int64 }

// allocator hands out page-aligned ranges of an arena: first fit from the lowest offset, so
// that recently freed (already faulted-in) pages near the start are reused first, and freed
// ranges coalesce with their neighbours. It is not safe for concurrent use.
type allocator struct {
	size int64
	free []span // sorted by off, never adjacent
	used int64
}

func newAllocator(size int64) *allocator {
	size = size / PageSize * PageSize
	a := &allocator{size: size}
	if size > 0 {
		a.free = []span{{0, size}}
	}
	return a
}

func roundUp(n int64) int64 {
	if n <= 0 {
		return PageSize
	}
	return (n + PageSize - 1) / PageSize * PageSize
}

// alloc returns the offset of a free range of at least n bytes, or -1.
func (a *allocator) alloc(n int64) int64 {
	n = roundUp(n)
	for i, s := range a.free {
		if s.len >= n {
			off := s.off
			if s.len == n {
				a.free = append(a.free[:i], a.free[i+1:]...)
			} else {
				a.free[i] = span{s.off + n, s.len - n}
			}
			a.used += n
			return off
		}
	}
	return -1
}

// release returns the range [off, off+n) allocated by alloc(n).
func (a *allocator) release(off, n int64) {
	n = roundUp(n)
	a.used -= n
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].off > off })
	a.free = append(a.free, span{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span{off, n}
	// merge with the next, then with the previous
	if i+1 < len(a.free) && a.free[i].off+a.free[i].len == a.free[i+1].off {
		a.free[i].len += a.free[i+1].len
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].len == a.free[i].off {
		a.free[i-1].len += a.free[i].len
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
}

// largest returns the size of the largest free range.
func (a *allocator) largest() int64 {
	var m int64
	for _, s := range a.free {
		if s.len > m {
			m = s.len
		}
	}
	return m
}
