# Plots reference_bench's CSV (--csv): left, sampling a batch of 64 rows (temperature 1, top_p
# 0.95) with the sorting sampler and recur's; right, tokens/s through gRPC at 64 streams against
# the in-process batch-64 step, at each vocabulary.
# Usage: gnuplot -e "in='docs/img/reference-bench.csv'; out='docs/img/serving-vocab.png'" \
#          bench/plot_reference.gp
set datafile separator ","
set terminal pngcairo size 1000,460 font "sans,10" noenhanced
set output out
set multiplot layout 1,2
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set key below
pick(name, batch) = sprintf("< awk -F, '$1==\"%s\" && $4==%d {print $2\",\"$6}' %s", name, batch, in)

set title "Sampling 64 rows: temperature 1, top_p 0.95"
set ylabel "ms per batch (log)"
set logscale y
plot pick("sample_seconds_sorting/temperature 1; top_p 0.95", 64) using ($2*1e3):xtic(1) title "sorting sampler (before)", \
     pick("sample_seconds/temperature 1; top_p 0.95", 64) using ($2*1e3) title "recur's sampler"

unset logscale y
set title "64 streams: through gRPC against the model in process"
set ylabel "tokens/s"
set yrange [0:*]
plot pick("in_process_tokens_per_second", 64) using 2:xtic(1) title "in-process Step, batch 64", \
     pick("grpc_tokens_per_second", 64) using 2 title "through gRPC (temperature 1, top_p 0.95)"
unset multiplot
