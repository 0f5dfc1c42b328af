set terminal pngcairo size 900,480 noenhanced
set output 'serving-sampling-helper.png'
set title "gRPC tokens/s as % of the in-process step (temperature 1, top_p 0.95)\nOPENBLAS_THREAD_TIMEOUT=4, one run"
set xlabel "concurrent streams"; set ylabel "% of in-process"
set logscale x 2; set xrange [0.8:80]; set xtics ("1" 1, "8" 8, "64" 64); set yrange [50:140]; set key outside right
set arrow from 1,80 to 64,80 nohead dt 3 lc rgb "gray"
plot for [i=0:2] 'serving-sampling-helper.dat' index i using 1:2 with linespoints lw 2 title sprintf("%s words, helper", word("257 10,000 33,278", i+1)), \
     for [i=3:5] 'serving-sampling-helper.dat' index i using 1:2 with linespoints dt 2 title sprintf("%s words, no helper", word("257 10,000 33,278", i-2))
