# gnuplot -e "datafile='llm_refresh.dat'; outfile='x.png'; seed=3100; customers=10000; per=25; latency=300" llm_refresh.gp
# llm_refresh.dat (written by llm_refresh.sh): concurrency wall_s requests customers floor_s client_s
#   floor_s = ceil(requests / concurrency) rounds x the mock's latency: the time the answers alone take
# seed = the seed's way (1 customer per request, sequential) scaled to `customers`, in seconds
set terminal pngcairo size 900,600 font "DejaVu Sans,11"
set output outfile
set title sprintf("llm\\_refresh of %d cold-start customers, mock answering in %d ms", customers, latency)
stats datafile using 5 nooutput
ymin = STATS_min / 1.6
set logscale x 2
set logscale y 10
set xlabel "requests in flight (personalize.openai\\_concurrency, log scale)"
set ylabel "wall time, seconds (log scale)"
set format y "%g"
set xtics ("1" 1, "2" 2, "4" 4, "8" 8)
set ytics (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
set xrange [0.8:10]
set yrange [ymin:seed * 3]
set grid xtics ytics lc rgb "#dddddd"
set key inside left bottom box opaque font ",10"
plot datafile using 1:2 with linespoints lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title sprintf("llm\\_refresh, %d customers per request", per), \
     datafile using 1:2:(sprintf("%.1f s", $2)) with labels offset 0,1.2 textcolor rgb "#1f77b4" notitle, \
     datafile using 1:5 with linespoints lw 1 dt 2 pt 1 lc rgb "#7f7f7f" title sprintf("rounds x %d ms (the answers alone)", latency), \
     seed with lines lw 2 lc rgb "#d62728" title sprintf("the seed's way: 1 per request, sequential (%.0f s, scaled)", seed), \
     seed / 50.0 with lines lw 2 dt 3 lc rgb "#2ca02c" title sprintf("target: 50x less than the seed's way (%.1f s)", seed / 50.0)
