# Two recur-soak CSVs' resident memory on one plot (docs/security.md).
# Usage: gnuplot -e "a='x.csv'; a_title='...'; b='y.csv'; b_title='...'; out='z.png'" bench/plot_soak_compare.gp
set datafile separator ","
set terminal pngcairo size 900,420 font "sans,10"
set output out
set key bottom right
set xlabel "seconds"
set ylabel "recur-server resident memory (MiB)"
set yrange [0:*]
set grid
plot a using 1:2 skip 1 with linespoints title a_title, \
     b using 1:2 skip 1 with linespoints title b_title
