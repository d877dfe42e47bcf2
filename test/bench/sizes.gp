# gnuplot -e "datafile='sizes.dat'; outfile='sizes.png'" sizes.gp
# sizes.dat (test/bench/sizes.sh): size events pairs generate_s load_s fold_s lists_s rebuild_s
#           load_mb fold_mb lists_mb rebuild_mb p50_ms p99_ms model_bytes
set terminal pngcairo size 1100,500 font "DejaVu Sans,11"
set output outfile
set multiplot layout 1,2 title "Cost against size (S, M, L of test/bench/generate.sql)" noenhanced
set logscale xy
set xlabel "events (log scale)"
set format x "10^{%L}"
set xrange [5e4:4e7]
set grid xtics ytics lc rgb "#dddddd"
set key top left box opaque font ",9"
set title "time (s, log scale)" noenhanced
plot datafile using 2:($5+$6+$7) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "load through the triggers + fold + lists", \
     datafile using 2:5 with linespoints lw 1 pt 6 lc rgb "#1f77b4" dt 2 title "load alone", \
     datafile using 2:8 with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "rebuild()", \
     datafile using 2:4 with linespoints lw 1 pt 4 lc rgb "#7f7f7f" title "generate", \
     datafile using 2:($5+$6+$7):1 with labels offset 0,1 textcolor rgb "#444444" notitle
set title "peak private memory of the server (MB, log scale)" noenhanced
plot datafile using 2:9 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "load", \
     datafile using 2:10 with linespoints lw 2 pt 9 lc rgb "#2ca02c" title "fold", \
     datafile using 2:11 with linespoints lw 2 pt 11 lc rgb "#9467bd" title "lists (2 sessions)", \
     datafile using 2:12 with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "rebuild()"
unset multiplot
