# gnuplot -e "datafile='latency.dat'; outfile='latency.png'" latency.gp
# latency.dat: label events rec_p50 rec_p99 plain_p50 plain_p99 rec_mean plain_mean
# Synthetic sizes (S, M, L) are joined by lines; Online Retail (OR) is a separate point.
set terminal pngcairo size 900,600 font "DejaVu Sans,11"
set output outfile
set title "recommend() against the plain self-join query (pgbench, 1 client, random customers)"
set logscale xy
set xlabel "interactions in the data set (log scale)"
set ylabel "milliseconds per call (log scale)"
set format x "10^{%L}"
set format y "%g"
set xrange [5e4:4e7]
set yrange [0.05:50000]
set grid xtics ytics lc rgb "#dddddd"
set key inside right center box opaque font ",10"
set arrow from 5e4,1 to 4e7,1 nohead lc rgb "#2ca02c" dt 3 lw 2
set label "1 ms (p99 target)" at 6e4,1.5 tc rgb "#2ca02c"
syn = '< grep -v "^OR" '.datafile.' | sort -n -k2'
real = '< grep "^OR" '.datafile
plot syn  using 2:3 with linespoints lw 2 pt 7 ps 1.2 lc rgb "#1f77b4" title "recommend() p50", \
     syn  using 2:4 with linespoints lw 2 pt 5 ps 1.2 lc rgb "#1f77b4" dt 2 title "recommend() p99", \
     syn  using 2:5 with linespoints lw 2 pt 7 ps 1.2 lc rgb "#d62728" title "plain SQL p50", \
     syn  using 2:6 with linespoints lw 2 pt 5 ps 1.2 lc rgb "#d62728" dt 2 title "plain SQL p99", \
     real using 2:3 with points pt 9 ps 1.8 lc rgb "#1f77b4" title "Online Retail: recommend() p50", \
     real using 2:4 with points pt 8 ps 1.8 lc rgb "#1f77b4" title "Online Retail: recommend() p99", \
     real using 2:5 with points pt 9 ps 1.8 lc rgb "#d62728" title "Online Retail: plain SQL p50", \
     real using 2:6 with points pt 8 ps 1.8 lc rgb "#d62728" title "Online Retail: plain SQL p99", \
     datafile using 2:6:1 with labels offset 0,1.3 textcolor rgb "#444444" notitle, \
     datafile using 2:4:1 with labels offset 0,1.3 textcolor rgb "#444444" notitle
