# Plots a recur-soak CSV: the server's resident memory and the calls completed over time.
# Usage: gnuplot -e "in='soak.csv'; out='docs/img/soak-rss.png'" bench/plot_soak.gp
set datafile separator ","
set terminal pngcairo size 900,420 font "sans,10"
set output out
set key bottom right
set xlabel "seconds"
set ylabel "resident memory (MiB)"
set y2label "calls completed"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
plot in using 1:2 skip 1 with linespoints title "recur-server VmRSS" axes x1y1, \
     in using 1:3 skip 1 with lines title "calls (all kinds)" axes x1y2
