package slurm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxRange is the most host names one range ("n[0-65535]"), one bracket ("n[1-9,20-30]") or
// one bracketed name ("rack[1-4]-node[1-64]") may stand for. Slurm 22.05 rejects a range of
// more than 65536 hosts; the limit on brackets and whole names keeps a short string from
// expanding into millions of names.
const MaxRange = 65536

// MaxNames is the most host names Expand returns for a whole hostlist. It is far above the
// node count of any cluster built so far (Fugaku has about 160,000 nodes), and keeps a few
// kilobytes of input from taking gigabytes.
const MaxNames = 1 << 20

// ErrHostlist is wrapped by every error that Expand returns.
var ErrHostlist = errors.New("invalid hostlist")

// ErrCounts is wrapped by every error that ExpandCounts returns.
var ErrCounts = errors.New("invalid count list")

// detailError is the part of a parse error that says what is wrong. It unwraps to its
// sentinel so that callers can use errors.Is while the message stays free of the sentinel's
// own text.
type detailError struct {
	msg      string
	sentinel error
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.sentinel }

func hostlistError(s, format string, args ...any) error {
	return fmt.Errorf("parse hostlist %q: %w", abbreviate(s),
		&detailError{msg: fmt.Sprintf(format, args...), sentinel: ErrHostlist})
}

// isSep reports whether c separates hostlist tokens. Slurm 22.05 splits on space, tab and
// comma only (commas inside brackets separate ranges instead).
func isSep(c byte) bool { return c == ' ' || c == '\t' || c == ',' }

// isControl reports whether c is an ASCII control character other than tab.
func isControl(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

// Expand returns the host names of the hostlist s in the order `scontrol show hostnames`
// prints them: tokens left to right, ranges in the order written, and in a name with two
// brackets the first varies slowest ("rack[1-2]-node[01-02]" gives rack1-node01,
// rack1-node02, rack2-node01, rack2-node02). With three or more brackets Slurm's order is
// less obvious: the last bracket varies fastest and the others, slower, from the first to
// the second-to-last ("a[1-2]b[3-4]c[5]" gives a1b3c5, a2b3c5, a1b4c5, a2b4c5). Zero
// padding comes from the width of each range's low bound ("n[01-3]" gives n01, n02, n03).
// Duplicates are kept.
//
// An empty or all-separator s gives an empty list. A bracketed name may stand for at most
// MaxRange names and the whole list for at most MaxNames. Errors wrap ErrHostlist and name
// the input (shortened when long) and what is wrong with it; see the package documentation
// for the grammar.
func Expand(s string) ([]string, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	parsed := make([][]piece, len(toks))
	total := 0
	for i, tok := range toks {
		var n int
		if parsed[i], n, err = parseToken(s, tok); err != nil {
			return nil, err
		}
		if total += n; total > MaxNames {
			return nil, hostlistError(s, "stands for more than %d host names", MaxNames)
		}
	}
	var names []string
	if total > 0 {
		names = make([]string, 0, total)
	}
	for _, pieces := range parsed {
		names = appendNames(names, pieces)
	}
	return names, nil
}

// abbreviate shortens a long hostlist for an error message.
func abbreviate(s string) string {
	if len(s) <= 200 {
		return s
	}
	return s[:100] + "..." + s[len(s)-100:]
}

// tokenize splits s at separators outside brackets and checks that brackets balance.
// Each token is one name pattern, such as "rack[1-2]-node[01-02]".
func tokenize(s string) ([]string, error) {
	var toks []string
	start := -1 // start of the current token, -1 between tokens
	open := -1  // offset of the unclosed '[', -1 outside brackets
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isControl(c):
			return nil, hostlistError(s, "control character %q at offset %d; host names cannot contain it", c, i)
		case open >= 0:
			switch {
			case c == ']':
				open = -1
			case c == '[':
				return nil, hostlistError(s, "'[' at offset %d is inside the bracket opened at offset %d; brackets do not nest", i, open)
			case c == ' ' || c == '\t':
				return nil, hostlistError(s, "whitespace at offset %d inside brackets", i)
			}
		case isSep(c):
			if start >= 0 {
				toks = append(toks, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
			switch c {
			case '[':
				open = i
			case ']':
				return nil, hostlistError(s, "']' at offset %d has no matching '['", i)
			}
		}
	}
	if open >= 0 {
		return nil, hostlistError(s, "'[' at offset %d is never closed", open)
	}
	if start >= 0 {
		toks = append(toks, s[start:])
	}
	return toks, nil
}

// numRange is one "lo-hi" or "n" inside brackets; width is the length of lo as written.
type numRange struct {
	lo, hi uint64
	width  int
}

func (r numRange) count() uint64 { return r.hi - r.lo + 1 }

// piece is a literal run of a token, or a bracket when ranges is non-nil.
type piece struct {
	literal string
	ranges  []numRange
}

// parseToken splits a token into literals and brackets and counts the names it stands for;
// s is the whole hostlist, for error messages.
func parseToken(s, tok string) ([]piece, int, error) {
	var pieces []piece
	text := tok
	total := uint64(1)
	for len(text) > 0 {
		i := strings.IndexByte(text, '[')
		if i < 0 {
			if len(pieces) > 0 {
				return nil, 0, hostlistError(s, "%q follows the last ']' in %q; Slurm 22.05 does not allow text after the last bracket of a name",
					text, tok)
			}
			pieces = append(pieces, piece{literal: text})
			break
		}
		if i > 0 {
			pieces = append(pieces, piece{literal: text[:i]})
		}
		j := strings.IndexByte(text, ']') // tokenize guarantees it follows i
		ranges, err := parseBracket(s, text[i+1:j])
		if err != nil {
			return nil, 0, err
		}
		var n uint64
		for _, r := range ranges {
			n += r.count() // stops at the first excess, so it cannot overflow
			if n > MaxRange {
				return nil, 0, hostlistError(s, "bracket [%s] stands for more than %d hosts", text[i+1:j], MaxRange)
			}
		}
		total *= n
		if total > MaxRange {
			return nil, 0, hostlistError(s, "%q stands for more than %d host names", tok, MaxRange)
		}
		pieces = append(pieces, piece{ranges: ranges})
		text = text[j+1:]
	}
	return pieces, int(total), nil
}

// appendNames appends the names of a token to names, in Slurm 22.05's order. Slurm expands
// the last bracket as the host range and every earlier bracket as part of the prefix, taking
// the prefix brackets from the right, each one an outer loop around the ones to its left:
// the second-to-last bracket varies slowest, then the ones before it towards the first, and
// the last bracket fastest. With two brackets this is simply "the first varies slowest".
func appendNames(names []string, pieces []piece) []string {
	var groups []int // indices of the brackets in pieces
	for i, p := range pieces {
		if p.ranges != nil {
			groups = append(groups, i)
		}
	}
	if len(groups) == 0 {
		return append(names, pieces[0].literal)
	}
	order := make([]int, 0, len(groups)) // outermost loop first
	for k := len(groups) - 2; k >= 0; k-- {
		order = append(order, groups[k])
	}
	order = append(order, groups[len(groups)-1])

	chosen := make([]string, len(pieces)) // the current number of each bracket
	var b strings.Builder
	var loop func(level int)
	loop = func(level int) {
		if level == len(order) {
			b.Reset()
			for i, p := range pieces {
				if p.ranges == nil {
					b.WriteString(p.literal)
				} else {
					b.WriteString(chosen[i])
				}
			}
			names = append(names, b.String())
			return
		}
		i := order[level]
		for _, r := range pieces[i].ranges {
			for v := r.lo; ; v++ {
				chosen[i] = padNumber(v, r.width)
				loop(level + 1)
				if v == r.hi { // not v <= r.hi: hi may be math.MaxUint64
					break
				}
			}
		}
	}
	loop(0)
	return names
}

// parseBracket parses the text between '[' and ']'.
func parseBracket(s, body string) ([]numRange, error) {
	if body == "" {
		return nil, hostlistError(s, "empty brackets []")
	}
	parts := strings.Split(body, ",")
	if len(parts) > MaxRange {
		return nil, hostlistError(s, "bracket [%s] holds more than %d ranges", body, MaxRange)
	}
	ranges := make([]numRange, 0, len(parts))
	for _, part := range parts {
		r, err := parseRange(s, body, part)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

func parseRange(s, body, part string) (numRange, error) {
	if part == "" {
		return numRange{}, hostlistError(s, "empty range in [%s]", body)
	}
	loText, hiText, isRange := strings.Cut(part, "-")
	if !isRange {
		hiText = loText
	}
	if !isDigits(loText) || !isDigits(hiText) {
		return numRange{}, hostlistError(s, "range %q in [%s] is not a number or a lo-hi range of numbers", part, body)
	}
	lo, err := strconv.ParseUint(loText, 10, 64)
	if err != nil {
		return numRange{}, hostlistError(s, "number %s in [%s] does not fit in 64 bits", loText, body)
	}
	hi, err := strconv.ParseUint(hiText, 10, 64)
	if err != nil {
		return numRange{}, hostlistError(s, "number %s in [%s] does not fit in 64 bits", hiText, body)
	}
	if lo > hi {
		return numRange{}, hostlistError(s, "range %s has low bound above high bound", part)
	}
	if hi-lo >= MaxRange {
		return numRange{}, hostlistError(s, "range %s has more than %d hosts, the most Slurm allows", part, MaxRange)
	}
	return numRange{lo: lo, hi: hi, width: len(loText)}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// padNumber formats v in decimal, zero padded on the left to width digits.
func padNumber(v uint64, width int) string {
	d := strconv.FormatUint(v, 10)
	if len(d) >= width {
		return d
	}
	return strings.Repeat("0", width-len(d)) + d
}

// hostRun is a run of consecutive names: prefix followed by lo..hi padded to width, or, when
// single is set, just prefix (a name without a numeric suffix).
type hostRun struct {
	prefix string
	single bool
	lo, hi uint64
	width  int
}

// Compress returns the hostlist that `scontrol show hostlist` prints for names, given as a
// comma-separated list. Like scontrol it keeps the input order and duplicates: it merges a
// name into the range before it when the prefixes match and the number is one more with the
// same zero padding, and it puts neighbouring ranges with the same prefix into one bracket
// ("n1,n2,n3,m1" gives "n[1-3],m1"; "n1,n3,n2" gives "n[1,3,2]"; "n09,n10,n011" gives
// "n[09-10,011]").
//
// A valid host name is non-empty and holds no space, tab, comma, bracket or control
// character; Expand(Compress(names)) equals names for every list of valid names. Other names
// are copied into the result as they are, so the result does not expand back to them. A
// numeric suffix too large for 64 bits is kept as written, where scontrol clamps it.
func Compress(names []string) string {
	runs := make([]hostRun, 0, len(names))
	for _, name := range names {
		prefix, digits := splitNumericSuffix(name)
		v, err := strconv.ParseUint(digits, 10, 64)
		if digits == "" || err != nil {
			// Slurm would clamp a suffix too large for 64 bits; keeping the name whole is
			// what lets Expand give it back.
			runs = append(runs, hostRun{prefix: name, single: true})
			continue
		}
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if !last.single && last.prefix == prefix && last.hi != math.MaxUint64 &&
				v == last.hi+1 && padNumber(v, last.width) == digits {
				last.hi = v
				continue
			}
		}
		runs = append(runs, hostRun{prefix: prefix, lo: v, hi: v, width: len(digits)})
	}

	var b strings.Builder
	for i := 0; i < len(runs); {
		if i > 0 {
			b.WriteByte(',')
		}
		first := runs[i]
		b.WriteString(first.prefix)
		if first.single {
			i++
			continue
		}
		j := i + 1
		for j < len(runs) && !runs[j].single && runs[j].prefix == first.prefix {
			j++
		}
		bracket := j-i > 1 || first.lo != first.hi
		if bracket {
			b.WriteByte('[')
		}
		for k := i; k < j; k++ {
			if k > i {
				b.WriteByte(',')
			}
			r := runs[k]
			b.WriteString(padNumber(r.lo, r.width))
			if r.hi != r.lo {
				b.WriteByte('-')
				b.WriteString(padNumber(r.hi, r.width))
			}
		}
		if bracket {
			b.WriteByte(']')
		}
		i = j
	}
	return b.String()
}

// splitNumericSuffix splits name before its trailing ASCII digits.
func splitNumericSuffix(name string) (prefix, digits string) {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	return name[:i], name[i:]
}
