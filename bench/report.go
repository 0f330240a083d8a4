package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// group is the runs of one server at one point: the repetitions whose
// median the report shows.
type group struct {
	mode, server, shape string
	offered             float64
	runs                []Result
}

func (g *group) median(f func(Result) float64) float64 {
	vs := make([]float64, len(g.runs))
	for i, r := range g.runs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func (g *group) checks() string {
	ok, na := 0, 0
	for _, r := range g.runs {
		switch {
		case r.Check == "ok":
			ok++
		case strings.HasPrefix(r.Check, "n/a"):
			na++
		}
	}
	s := fmt.Sprintf("%d/%d ok", ok, len(g.runs))
	if na > 0 {
		s += fmt.Sprintf(", %d with loss", na)
	}
	if bad := len(g.runs) - ok - na; bad > 0 {
		s += fmt.Sprintf(", **%d wrong**", bad)
	}
	return s
}

func groupResults(results []Result) []*group {
	var groups []*group
	index := map[string]*group{}
	for _, r := range results {
		key := fmt.Sprintf("%s|%s|%s|%g", r.Mode, r.Server, r.Shape, r.Offered)
		g := index[key]
		if g == nil {
			g = &group{mode: r.Mode, server: r.Server, shape: r.Shape, offered: r.Offered}
			index[key] = g
			groups = append(groups, g)
		}
		g.runs = append(g.runs, r)
	}
	// By mode, shape, rate, then server in the order of the first runs.
	order := map[string]int{}
	for _, g := range groups {
		if _, ok := order[g.server]; !ok {
			order[g.server] = len(order)
		}
	}
	slices.SortStableFunc(groups, func(a, b *group) int {
		switch {
		case a.mode != b.mode:
			return strings.Compare(b.mode, a.mode) // rate first
		case a.shape != b.shape:
			return strings.Compare(a.shape, b.shape)
		case a.offered != b.offered:
			if a.offered < b.offered {
				return -1
			}
			return 1
		}
		return order[a.server] - order[b.server]
	})
	return groups
}

// printReport prints the medians of the runs in path as Markdown tables,
// and with plotDir writes one gnuplot data file per shape and server:
// offered datagrams/s, CPU µs per datagram, loss %.
func printReport(path, plotDir string) error {
	results, err := readResults(path)
	if err != nil {
		return err
	}
	groups := groupResults(results)
	shape := ""
	for _, g := range groups {
		if g.mode != "rate" {
			continue
		}
		if g.shape != shape {
			shape = g.shape
			fmt.Printf("\n%s shape, %d line(s) per datagram: medians of %d runs\n\n", shape, g.runs[0].LinesPerDG, len(g.runs))
			fmt.Println("| server | offered datagrams/s | processed lines/s | loss | kernel drops | CPU per datagram | CPU per line | cores | reads per datagram | peak RSS | totals |")
			fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		}
		reads := "n/a"
		if g.runs[0].Reads > 0 {
			reads = fmt.Sprintf("%.3f", g.median(Result.readsPerDG))
		}
		fmt.Printf("| %s | %s | %s | %.2f%% | %.2f%% | %s | %s | %.3f | %s | %.0f MiB | %s |\n",
			g.server, thousands(g.offered), thousands(g.median(Result.linesPerSec)),
			100*g.median(Result.loss), 100*g.median(Result.kernelDropFrac),
			micros(g.median(Result.cpuPerDG)), micros(g.median(Result.cpuPerLine)), g.median(Result.cores),
			reads, g.median(Result.peakRSSMiB), g.checks())
	}
	header := false
	for _, g := range groups {
		if g.mode != "capacity" {
			continue
		}
		if !header {
			header = true
			fmt.Printf("\nCapacity: a stopped server's socket pre-filled, then drained: medians of %d runs\n\n", len(g.runs))
			fmt.Println("| server | shape | lines drained per second | CPU per line | CPU per datagram | lines per CPU second | peak RSS | totals |")
			fmt.Println("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %.0f MiB | %s |\n", g.server, g.shape,
			thousands(g.median(Result.linesPerSec)), micros(g.median(Result.cpuPerLine)), micros(g.median(Result.cpuPerDG)),
			thousands(1e9/g.median(Result.cpuPerLine)), g.median(Result.peakRSSMiB), g.checks())
	}
	if plotDir == "" {
		return nil
	}
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return err
	}
	files := map[string]*strings.Builder{}
	var names []string
	for _, g := range groups {
		if g.mode != "rate" {
			continue
		}
		name := g.shape + "-" + g.server + ".dat"
		b := files[name]
		if b == nil {
			b = &strings.Builder{}
			files[name] = b
			names = append(names, name)
		}
		fmt.Fprintf(b, "%g\t%g\t%g\n", g.offered, g.median(Result.cpuPerDG)/1000, 100*g.median(Result.loss))
	}
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(plotDir, name), []byte(files[name].String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// thousands writes 1234567 as 1,234,567.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// micros writes nanoseconds as µs with two decimals, or ns under 1 µs.
func micros(ns float64) string {
	if ns < 1000 {
		return fmt.Sprintf("%.0f ns", ns)
	}
	return fmt.Sprintf("%.2f µs", ns/1000)
}
