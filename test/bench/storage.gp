# gnuplot -e "datafile='storage.dat'; outfile='storage.png'" storage.gp
# storage.dat: label events interactions_bytes pairs pair_counts_bytes model_bytes
# Synthetic sizes (S, M, L) are joined by lines; Online Retail (OR) is a separate point.
set terminal pngcairo size 900,600 font "DejaVu Sans,11"
set output outfile
set title "Storage against data size (pg_total_relation_size)" noenhanced
set logscale xy
set xlabel "interactions in the data set (log scale)"
set ylabel "MB (log scale)"
set format x "10^{%L}"
set xrange [5e4:4e7]
set yrange [5:50000]
set grid xtics ytics lc rgb "#dddddd"
set key inside right center box opaque font ",10"
syn = '< grep -v "^OR" '.datafile.' | sort -n -k2'
real = '< grep "^OR" '.datafile
plot syn  using 2:($3/1048576) with linespoints lw 2 pt 7 lc rgb "#7f7f7f" title "interactions", \
     syn  using 2:($5/1048576) with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "pair\\_counts", \
     syn  using 2:($6/1048576) with linespoints lw 2 pt 9 lc rgb "#1f77b4" title "whole model", \
     real using 2:($3/1048576) with points pt 6 ps 1.8 lc rgb "#7f7f7f" title "Online Retail: interactions", \
     real using 2:($5/1048576) with points pt 4 ps 1.8 lc rgb "#ff7f0e" title "Online Retail: pair\\_counts", \
     real using 2:($6/1048576) with points pt 8 ps 1.8 lc rgb "#1f77b4" title "Online Retail: whole model", \
     datafile using 2:($6/1048576):1 with labels offset 0,1.3 textcolor rgb "#444444" notitle
