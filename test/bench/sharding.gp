# gnuplot -e "datafile='sharding.dat'; outfile='sharding.png'" sharding.gp
# sharding.dat (test/bench/sharding.sh, part B), one line per layout:
#   shards first_round_s full_round_s incremental_round_s single_first_s single_full_s single_incremental_s
set terminal pngcairo size 900,500 font "DejaVu Sans,11"
set output outfile
set title "The model server's global round against a single server's refresh() (the same events)" noenhanced
set xlabel "shards"
set ylabel "seconds"
set xrange [0.5:3.5]
set xtics 1
set yrange [0:*]
set grid ytics lc rgb "#dddddd"
set key below font ",9"
plot datafile using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "first round after the load", \
     datafile using 1:3 with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "full round (median)", \
     datafile using 1:4 with linespoints lw 2 pt 9 lc rgb "#2ca02c" title "incremental round, +1% events (median)", \
     datafile using 1:5 with lines lw 1 dt 2 lc rgb "#1f77b4" title "single server: first refresh()", \
     datafile using 1:6 with lines lw 1 dt 2 lc rgb "#ff7f0e" title "single server: full refresh()", \
     datafile using 1:7 with lines lw 1 dt 2 lc rgb "#2ca02c" title "single server: refresh() after +1%"
