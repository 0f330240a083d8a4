#!/bin/sh
# plot.sh [RESULTS.tsv [OUT.png]]: draws BENCHMARKS.md's plot from the rate
# runs recorded in RESULTS.tsv (go run . -out RESULTS.tsv ...). Needs
# gnuplot (Debian: gnuplot-nox).
set -eu
cd "$(dirname "$0")"
results=${1:-results/rate.tsv}
out=${2:-results/rate.png}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
go run . -report "$results" -plot-data "$data" >/dev/null
gnuplot -e "datadir='$data'; out='$out'" plot.gp
echo "$out"
