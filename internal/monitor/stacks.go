package monitor

import (
	"bytes"
	"cmp"
	"fmt"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
)

// Bounds on the stacks a warning carries, so that a process with a
// hundred thousand goroutines still logs one readable line.
const (
	maxFramesPerStack = 24
	maxStacksBytes    = 16 << 10
)

// topStacks returns the limit most common goroutine stacks of the
// process, from the goroutine profile (which groups identical stacks).
func topStacks(limit int) string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return "goroutine profile: " + err.Error()
	}
	return formatStacks(buf.String(), limit, maxStacksBytes)
}

// stackGroup is one distinct stack and how many goroutines share it.
type stackGroup struct {
	count  int
	labels string
	frames []string // "function (file:line)", innermost first
}

// parseGoroutineProfile reads the debug=1 text of the goroutine profile:
// a "goroutine profile: total N" line, then blocks separated by blank
// lines, each "COUNT @ PCS" followed by "# labels: ..." and
// "#\tPC\tFUNC+OFF\tFILE:LINE" lines. Lines it does not know are skipped.
func parseGoroutineProfile(text string) (total int, groups []stackGroup) {
	for block := range strings.SplitSeq(text, "\n\n") {
		var g *stackGroup
		for line := range strings.SplitSeq(block, "\n") {
			switch {
			case strings.HasPrefix(line, "goroutine profile: total "):
				total, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
			case strings.HasPrefix(line, "# labels: "):
				if g != nil {
					g.labels = strings.TrimPrefix(line, "# labels: ")
				}
			case strings.HasPrefix(line, "#\t"):
				if g == nil {
					continue
				}
				f := strings.FieldsFunc(line, func(r rune) bool { return r == '\t' })
				if len(f) < 4 {
					continue
				}
				fn := f[2]
				if i := strings.LastIndex(fn, "+0x"); i > 0 {
					fn = fn[:i]
				}
				g.frames = append(g.frames, fn+" ("+f[3]+")")
			default:
				n, _, ok := strings.Cut(line, " @ ")
				if !ok {
					continue
				}
				c, err := strconv.Atoi(n)
				if err != nil {
					continue
				}
				groups = append(groups, stackGroup{count: c})
				g = &groups[len(groups)-1]
			}
		}
	}
	// The profile lists the most common stacks first; sort anyway, so
	// that the order does not rest on it.
	slices.SortStableFunc(groups, func(a, b stackGroup) int { return cmp.Compare(b.count, a.count) })
	return total, groups
}

// formatStacks renders the limit most common stacks of a debug=1
// goroutine profile, each cut to maxFramesPerStack frames and the whole
// to about maxBytes.
func formatStacks(text string, limit, maxBytes int) string {
	total, groups := parseGoroutineProfile(text)
	shown := max(0, min(limit, len(groups)))
	var b strings.Builder
	fmt.Fprintf(&b, "%d goroutines in %d distinct stacks; the %d most common:\n", total, len(groups), shown)
	for i, g := range groups[:shown] {
		if b.Len() >= maxBytes {
			fmt.Fprintf(&b, "... %d more stacks cut\n", shown-i)
			break
		}
		fmt.Fprintf(&b, "\n%d goroutines", g.count)
		if g.labels != "" {
			fmt.Fprintf(&b, " labels %s", g.labels)
		}
		b.WriteString(":\n")
		for j, f := range g.frames {
			if j == maxFramesPerStack {
				fmt.Fprintf(&b, "  ... %d more frames\n", len(g.frames)-j)
				break
			}
			b.WriteString("  ")
			b.WriteString(f)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
