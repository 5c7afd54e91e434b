//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// targetColors are the bar colours, by target.
var targetColors = map[string]string{
	targetDirect:             "#7f7f7f",
	targetBouncer:            "#1f77b4",
	targetGate:               "#ff7f0e",
	targetGateReuse:          "#2ca02c",
	targetGateEventloop:      "#d62728",
	targetGateEventloopReuse: "#e377c2",
	targetGateIOUring:        "#9467bd",
	targetGateIOUringReuse:   "#aec7e8",
	targetGateLedger:         "#8c564b",
	targetGateLedgerLogged:   "#c49c94",
	targetGateLedgerUnlogged: "#c49c94",
	targetGateCASets:         "#bcbd22",
	targetGateOCSP:           "#17becf",
	targetBouncerPlain:       "#c5b0d5",
	targetRelayFloor:         "#dbdb8d",
}

// gnuplotScript draws one panel per workload: a bar per target at the
// median, with the min–max range as an error bar and the median printed
// above it. data holds one gnuplot index block per workload with rows
// "x median colour min max label".
func (r *report) gnuplotScript(dataPath, pngPath string) (script, data string) {
	names := r.targetNames()
	// Each panel shows the targets measured on its workload (the
	// connect-only targets appear in one panel), each in its own colour.
	panel := make([][]int, len(r.workloads))
	var d strings.Builder
	for wi, w := range r.workloads {
		fmt.Fprintf(&d, "# %s\n", w.Key)
		for i, n := range names {
			s := r.summary(n, w.Key)
			if s.N == 0 {
				continue
			}
			fmt.Fprintf(&d, "%d %g %d %g %g \"%s\"\n", len(panel[wi]), s.Median, i+1, s.Min, s.Max, fmtValue(s.Median))
			panel[wi] = append(panel[wi], i)
		}
		d.WriteString("\n\n")
	}
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	width := 80
	for _, ts := range panel {
		width += max(300, 48*len(ts)+120)
	}
	p("set terminal pngcairo noenhanced size %d,540 font 'sans,11'\n", max(width, 720))
	p("set output %q\n", pngPath)
	for i, n := range names {
		c, ok := targetColors[n]
		if !ok {
			c = "#9467bd" // an A/B target
		}
		p("set linetype %d lc rgb %q\n", i+1, c)
	}
	p("set style fill solid 0.85 border lc rgb '#333333'\n")
	p("set boxwidth 0.7\nset grid ytics lc rgb '#dddddd'\nset border 3\nset tics nomirror\n")
	p("set yrange [0:*]\nset offsets 0,0,graph 0.1,0\n")
	p("set multiplot layout 1,%d title \"make bench %s: bar = median of %d rounds, whisker = min-max\" font 'sans,13'\n",
		len(r.workloads), r.finished.UTC().Format("2006-01-02"), r.opts.rounds)
	for wi, w := range r.workloads {
		var tics []string
		for x, i := range panel[wi] {
			tics = append(tics, fmt.Sprintf("%q %d", names[i], x))
		}
		p("set xrange [-0.6:%g]\n", float64(max(len(panel[wi]), 1))-0.4)
		p("set xtics (%s) rotate by -30 font 'sans,10'\n", strings.Join(tics, ", "))
		p("set title %q\nset ylabel %q\n", w.Title, w.Unit)
		p("plot %q index %d using 1:2:(0.7):3 with boxes lc variable notitle, \\\n", dataPath, wi)
		p("  '' index %d using 1:2:4:5 with yerrorbars lc rgb 'black' pt 7 ps 0 notitle, \\\n", wi)
		p("  '' index %d using 1:5:6 with labels offset 0,0.9 font 'sans,10' notitle\n", wi)
	}
	p("unset multiplot\n")
	return s.String(), d.String()
}

// writePlot draws the PNG with gnuplot (bench-deps installs gnuplot-nox).
func (r *report) writePlot() error {
	if r.opts.plot == "" {
		return nil
	}
	png, err := filepath.Abs(r.opts.plot)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(png), 0o755); err != nil {
		return err
	}
	dataPath := r.env.path("plot.dat")
	script, data := r.gnuplotScript(dataPath, png)
	if err := os.WriteFile(dataPath, []byte(data), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(r.env.path("plot.gp"), []byte(script), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(r.tools.gnuplot)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out.String())
	}
	return nil
}
