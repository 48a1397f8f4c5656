// Command summarize reads the JSON lines written by run.sh and prints a
// Markdown table of medians per configuration, with the load averages seen.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type line struct {
	Round  int                `json:"round"`
	Label  string             `json:"label"`
	Mode   string             `json:"mode"`
	Load1  float64            `json:"load1_before"`
	Error  string             `json:"error"`
	Result map[string]any     `json:"result"`
	Nums   map[string]float64 `json:"-"`
}

func main() {
	path := "results.jsonl"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	type key struct{ label, mode string }
	vals := map[key]map[string][]float64{}
	meta := map[string][2]string{} // label -> system, driver
	var order []string
	var loads []float64
	failures := 0
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var l line
		if err := json.Unmarshal(s.Bytes(), &l); err != nil {
			continue
		}
		loads = append(loads, l.Load1)
		if l.Error != "" || l.Result == nil {
			failures++
			continue
		}
		if _, ok := meta[l.Label]; !ok {
			order = append(order, l.Label)
			sys, _ := l.Result["system"].(string)
			if sys == "" {
				sys = "kiln"
			}
			drv, _ := l.Result["driver"].(string)
			meta[l.Label] = [2]string{sys, drv}
		}
		k := key{l.Label, l.Mode}
		if vals[k] == nil {
			vals[k] = map[string][]float64{}
		}
		for name, v := range l.Result {
			if x, ok := v.(float64); ok {
				vals[k][name] = append(vals[k][name], x)
			}
		}
	}
	med := func(k key, name string) string {
		xs := vals[k][name]
		if len(xs) == 0 {
			return "–"
		}
		sort.Float64s(xs)
		var m float64
		if n := len(xs); n%2 == 1 {
			m = xs[n/2]
		} else {
			m = (xs[n/2-1] + xs[n/2]) / 2
		}
		if m >= 100 {
			return fmt.Sprintf("%.0f", m)
		}
		return fmt.Sprintf("%.1f", m)
	}
	runs := func(k key) int { return len(vals[k]["jobs"]) }
	fmt.Println("| config | system | driver | insert jobs/s | work jobs/s | peak RSS MB | p50 ms | p95 ms | p99 ms | max ms | runs (tp/lat) |")
	fmt.Println("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, label := range order {
		tp, lat := key{label, "throughput"}, key{label, "latency"}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", label, meta[label][0], meta[label][1],
			med(tp, "insert_jobs_per_s"), med(tp, "work_jobs_per_s"), med(tp, "peak_rss_mb"),
			med(lat, "p50_ms"), med(lat, "p95_ms"), med(lat, "p99_ms"), med(lat, "max_ms"), runs(tp), runs(lat))
	}
	if len(loads) > 0 {
		sort.Float64s(loads)
		strs := make([]string, 0, 3)
		strs = append(strs, fmt.Sprintf("min %.2f", loads[0]), fmt.Sprintf("median %.2f", loads[len(loads)/2]), fmt.Sprintf("max %.2f", loads[len(loads)-1]))
		fmt.Printf("\n1-minute load average before each run: %s (%d runs, %d failed)\n", strings.Join(strs, ", "), len(loads), failures)
	}
}
