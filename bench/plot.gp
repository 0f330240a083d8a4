# CPU per datagram and loss against the offered rate, one row per traffic
# shape, one line per server. Run by plot.sh, which sets datadir (gnuplot
# data files written by `go run . -report FILE -plot-data DIR`) and out.
set terminal pngcairo size 1200,900 font ",10"
set output out
set termoption noenhanced
set multiplot layout 2,2 title "statsbridge and statsd_exporter, medians of interleaved runs"
set logscale x
set autoscale xfix
set format x "%.0s%c"
set grid
set key top left
set xlabel "offered datagrams per second"

do for [shape in "prosody batched"] {
	files = system("ls ".datadir."/".shape."-*.dat 2>/dev/null")
	set title shape." shape: server CPU per datagram"
	set ylabel "µs of CPU per datagram"
	set yrange [0:*]
	plot for [f in files] f using 1:2 with linespoints lw 2 \
		title system("basename ".f." .dat | sed 's/^".shape."-//'")
	set title shape." shape: lines lost"
	set ylabel "% of lines lost"
	set yrange [0:*]
	plot for [f in files] f using 1:3 with linespoints lw 2 \
		title system("basename ".f." .dat | sed 's/^".shape."-//'")
}
unset multiplot
