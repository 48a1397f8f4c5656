package monitor

import (
	"fmt"
	"strings"
	"testing"
)

const sampleProfile = "goroutine profile: total 9\n" +
	"1 @ 0x442931 0x47cd1d\n" +
	"#\t0x4c8770\truntime/pprof.writeRuntimeProfile+0xb0\t/go/src/runtime/pprof/pprof.go:851\n" +
	"#\t0x4dc006\tmain.main+0xc6\t\t\t\t/app/main.go:7\n" +
	"\n" +
	"5 @ 0x47d92e 0x480b25\n" +
	"#\t0x480b24\ttime.Sleep+0x164\t/go/src/runtime/time.go:363\n" +
	"#\t0x4dc03c\tmain.main.func1+0x1c\t/app/main.go:4\n" +
	"\n" +
	"3 @ 0x47d92e 0x480b25 0x4dc0bd\n" +
	"# labels: {\"a\":\"b\"}\n" +
	"#\t0x480b24\ttime.Sleep+0x164\t/go/src/runtime/time.go:363\n" +
	"#\t0x4dc0bc\tmain.main.func2.1+0x1c\t/app/main.go:5\n" +
	"\n"

func TestFormatStacks(t *testing.T) {
	t.Parallel()
	got := formatStacks(sampleProfile, 2, maxStacksBytes)
	want := "9 goroutines in 3 distinct stacks; the 2 most common:\n" +
		"\n5 goroutines:\n" +
		"  time.Sleep (/go/src/runtime/time.go:363)\n" +
		"  main.main.func1 (/app/main.go:4)\n" +
		"\n3 goroutines labels {\"a\":\"b\"}:\n" +
		"  time.Sleep (/go/src/runtime/time.go:363)\n" +
		"  main.main.func2.1 (/app/main.go:5)\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFormatStacksBounds(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("goroutine profile: total 2000\n")
	for i := range 100 {
		fmt.Fprintf(&b, "%d @ 0x1\n", 20)
		for j := range 100 {
			fmt.Fprintf(&b, "#\t0x%x\tpkg.fn%d_%d+0x1\t/src/%s.go:%d\n", j, i, j, strings.Repeat("x", 50), j)
		}
		b.WriteString("\n")
	}
	got := formatStacks(b.String(), 100, 4096)
	if len(got) > 4096+maxFramesPerStack*100 {
		t.Errorf("%d bytes", len(got))
	}
	if !strings.Contains(got, "more frames") || !strings.Contains(got, "more stacks cut") {
		t.Errorf("no truncation marks:\n%s", got)
	}
	if strings.Contains(got, "pkg.fn0_24 ") {
		t.Error("frame beyond the per-stack limit shown")
	}
}

func TestTopStacksReal(t *testing.T) {
	t.Parallel()
	got := topStacks(3)
	if !strings.Contains(got, "goroutines in") || !strings.Contains(got, "TestTopStacksReal") {
		t.Errorf("stacks:\n%s", got)
	}
}

func FuzzFormatStacks(f *testing.F) {
	f.Add(sampleProfile, 3)
	f.Add("goroutine profile: total x\n1 @\n#\t\n# labels: \n\n\n", 1)
	f.Add("-5 @ 0x1\n#\t1\t2\t3\n", 0)
	f.Add("", -1)
	f.Fuzz(func(t *testing.T, text string, limit int) {
		out := formatStacks(text, limit, 1024)
		if !strings.Contains(out, "distinct stacks") {
			t.Errorf("no header: %q", out)
		}
	})
}
