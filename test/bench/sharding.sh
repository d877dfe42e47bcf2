#!/bin/bash
# Scale-out (issue 15) on one machine, in one run, ratios side by side:
#   A. routing overhead: the same data on a single server and on a layout of 2 shards + a
#      model server + a PL/Proxy router (the router database in its own cluster);
#      recommend() and log_event() by pgbench (2 clients) direct to the single server,
#      direct to one shard (the same customers, all on that shard: what the shard's smaller
#      data saves) and through the router (what PL/Proxy adds), in alternating rounds;
#   B. the global round as shards grow: the same events over 1, 2 and 3 shards (one layout
#      each; each shard its own cluster, the model server its own cluster). After the load
#      the shards fold, then the model server's first full round (every product dirty),
#      more full rounds (global_refresh(all_products => true)) and incremental rounds after
#      1% more events each, against the single server's fold + refresh() of the same data;
#      seconds, the rows the round pulled (maintenance_runs.details) and how long until every
#      shard has the new lists (logical replication);
#   C. the single-server path before issue 15 (commit 8cac79b) and at HEAD, two clusters side
#      by side, the same data: load through the triggers, fold, refresh() with every product
#      dirty, refresh_popular(), recommend() and INSERT pgbench, in alternating rounds.
#
#   test/bench/sharding.sh [--parts A,B,C] [--duration 10] [--rounds 3] [--out DIR]
#                          [--products 2000] [--customers 20000] [--events 200000] [--quick]
#
# Both builds are private installs (git archive of HEAD and of 8cac79b, make install
# DESTDIR=$out/inst_*): never the system's. The clusters are throw-away ones from
# test/shard_clusters.sh on 127.0.0.1, ports from $SHARD_PORT_BASE (default 5700; the range
# used is the base to base + 99, which must stay in 5700-5999), all with the same settings
# (fsync = off as every cluster of shard_clusters.sh); every cluster is stopped on exit,
# the server logs copied to $out/log first. The data: test/bench/generate.sql's event stream
# (seeded: Zipf(0.7) customers, Zipf(1.0) products half by category), loaded through the
# model triggers; a shard gets the customers of its buckets (bucket % shards = its number,
# as personalize-layout deals the buckets). Markdown on stdout, raw logs (pgbench output and
# latency logs, setup logs, server logs, progress) under --out (default
# test/bench/out/sharding; the Markdown also in report.md, part B's curve in sharding.png
# by test/bench/sharding.gp when gnuplot is there). About 12 minutes with the defaults on 2 vCPUs; --quick (small
# data, 3 s runs, 1 round) is a smoke test of a minute or two.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
parts=A,B,C duration=10 rounds=3 np=2000 nc=20000 ne=200000
out=$root/test/bench/out/sharding
before=8cac79b   # the last commit before issue 15
as_of='2024-05-06 00:00+00'   # the stream spans 2024-01-01 + 120 days; the 1% rounds go past it
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) parts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --products) np=$2; shift 2 ;;
    --customers) nc=$2; shift 2 ;;
    --events) ne=$2; shift 2 ;;
    --quick) np=300 nc=3000 ne=20000 duration=3 rounds=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "sharding.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$duration" "$rounds" "$np" "$nc" "$ne"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "sharding.sh: numbers must be positive integers (got '$v')" >&2; exit 2; }
done
export SHARD_PORT_BASE=${SHARD_PORT_BASE:-5700}
if [ "$SHARD_PORT_BASE" -lt 5700 ] || [ "$SHARD_PORT_BASE" -gt 5900 ]; then
  echo "sharding.sh: SHARD_PORT_BASE must be 5700 to 5900 (ports base .. base + 99)" >&2; exit 2
fi
has() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
PGC=/usr/lib/postgresql/15/bin/pg_config

mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
log=$out/log
rm -rf "$log" "$out"/src_* "$out"/inst_* "$out/report.md" "$out/sharding.dat" "$out/sharding.png"
mkdir -p "$log"
say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$log/progress.log" >&2; }
die() { say "error: $*"; exit 1; }
report() { echo "$*" | tee -a "$out/report.md"; }

# --- private builds: HEAD (after) and the commit before issue 15 (before) ------------------
build() {   # commit name
  local src=$out/src_$2
  mkdir -p "$src" && git -C "$root" archive "$1" | tar -x -C "$src" || return 1
  make -s -j2 -C "$src" PG_CONFIG=$PGC >"$log/build_$2.log" 2>&1 &&
    make -s -C "$src" install PG_CONFIG=$PGC DESTDIR="$out/inst_$2" >>"$log/build_$2.log" 2>&1
}
head_commit=$(git -C "$root" rev-parse --short HEAD)
say "building HEAD ($head_commit) into $out/inst_after"
build HEAD after || die "the build of HEAD failed ($log/build_after.log)"
if has C; then
  say "building $before into $out/inst_before"
  build "$before" before || die "the build of $before failed ($log/build_before.log)"
fi

export PERSONALIZE_EXTENSION_DESTDIR=$out/inst_after
# shellcheck source=test/shard_clusters.sh
. "$root/test/shard_clusters.sh"
cleanup() {
  local f
  if [ -n "$shc_work" ]; then
    for f in "$shc_work"/*.log; do [ -f "$f" ] && cp "$f" "$log/server_${f##*/}"; done
  fi
  shc_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PGOPTIONS='-c client_min_messages=warning'

Q() { local c=$1 d=$2; shift 2; shc_psql "$c" -d "$d" "$@"; }
conn() { echo "host=127.0.0.1 port=${shc_port[$1]} dbname=$2 user=postgres"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }
sum() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f", s }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# timed VAR cluster db sql...: runs it, VAR = seconds (psql's connection included, ~10 ms)
timed() {
  local -n _t=$1; local c=$2 d=$3 t0; shift 3
  t0=$(now)
  Q "$c" "$d" "$@" >>"$log/sql.log" 2>&1 || die "on $c/$d: $* (see $log/sql.log)"
  _t=$(since "$t0")
}

conf=("shared_buffers = 256MB" "work_mem = 32MB" "maintenance_work_mem = 256MB" "max_wal_size = 4GB"
      "checkpoint_timeout = 30min" "jit = off" "max_connections = 60")
layouts=()
if has B; then layouts=(1 2 3); elif has A; then layouts=(2); fi
maxshards=0; for L in "${layouts[@]}"; do maxshards=$L; done

say "starting the clusters (ports from $SHARD_PORT_BASE)"
shc_start single "${conf[@]}" || die "cluster single does not start"
if [ ${#layouts[@]} -gt 0 ]; then
  for c in model router; do shc_start $c "${conf[@]}" || die "cluster $c does not start"; done
  for k in $(seq 1 "$maxshards"); do shc_start "s$k" "${conf[@]}" || die "cluster s$k does not start"; done
fi
if has C; then
  # the same library loading as the others, from the build before issue 15
  shc_destdir=$out/inst_before
  shc_start old "${conf[@]}" || die "cluster old does not start"
  shc_destdir=$out/inst_after
fi
for c in "${!shc_port[@]}"; do echo "$c ${shc_port[$c]}"; done | sort > "$log/ports"

pgv=$(Q single postgres -c 'SHOW server_version' | cut -d' ' -f1)
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
data="$np products, $nc customers, $ne events (test/bench/generate.sql's stream, seed 42: customers Zipf(0.7), products Zipf(1.0), half by category; 75% view) loaded through the model triggers"
settings="PostgreSQL $pgv, every server its own cluster on this machine, $(printf '%s, ' "${conf[@]:0:3}")jit = off, fsync = off"
stamp() { report "_Machine: $machine; load average $(cut -d' ' -f1-3 /proc/loadavg) now. Data: $data. $settings. personalize at $head_commit$1; $(date -u '+%Y-%m-%d %H:%M UTC')._"; }

# --- the data ---------------------------------------------------------------------------------
products_sql="INSERT INTO personalize.products (product_id, sku, name, category, price, created_at)
SELECT p, 'P' || lpad(p::text, 6, '0'), 'product ' || p, 'category ' || ((p - 1) % greatest(10, $np / 100) + 1),
       1 + (p * 7919 % 9900) / 100.0, timestamptz '2023-12-01 00:00+00' FROM generate_series(1, $np) p"
# prepare_db cluster db: the bench.* generator functions and the customers matching WHERE
prepare_db() {
  Q "$1" "$2" -v load=off -f "$here/generate.sql" >>"$log/sql.log" 2>&1 || die "generate.sql on $1/$2"
  Q "$1" "$2" -c "INSERT INTO personalize.customers (customer_id, created_at)
                  SELECT customer_id, timestamptz '2023-12-01 00:00+00' FROM generate_series(1, $nc) g(customer_id) WHERE $3" \
    >>"$log/sql.log" 2>&1 || die "customers on $1/$2"
}
# load_events VAR cluster db first count where: events first .. first+count-1, through the triggers
load_events() {
  local -n _le=$1
  timed _le "$2" "$3" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
                          SELECT e.* FROM bench.gen_events($4, $5, $nc, $np, $ne, 42) e WHERE $6"
}
shard_where() { echo "personalize.bucket_of(customer_id) % $1 = $(($2 - 1))"; }
new_db() {   # cluster db
  Q "$1" postgres -c "CREATE DATABASE $2" -c "ALTER DATABASE $2 SET personalize.as_of = '$as_of'" >/dev/null || die "database $2 on $1"
}

declare -A T   # timings and counts, by key
# the layout of L shards (database nL everywhere; shard k is nLsk in cluster sk)
setup_layout() {
  local L=$1 k args=() t0
  new_db model "n$L"
  Q router postgres -c "CREATE DATABASE n$L" >/dev/null || die "router database n$L"
  for k in $(seq 1 "$L"); do new_db "s$k" "n$L"; args+=(--shard "n${L}s$k=$(conn "s$k" "n$L")"); done
  t0=$(now)
  "$root/contrib/sharding/personalize-layout" setup --model "$(conn model "n$L")" --router "$(conn router "n$L")" \
    "${args[@]}" > "$log/setup_n$L.log" 2>&1 || { tail -n 5 "$log/setup_n$L.log" >&2; die "personalize-layout setup of n$L"; }
  T[n$L.setup]=$(since "$t0")
  Q model "n$L" -c "$products_sql" >/dev/null || die "products on the model server n$L"
  for k in $(seq 1 "$L"); do
    local deadline=$((SECONDS + 60))
    until [ "$(Q "s$k" "n$L" -c 'SELECT count(*) FROM personalize.products')" = "$np" ]; do
      [ $SECONDS -lt $deadline ] || die "the catalog does not reach s$k/n$L in 60 s"; sleep 0.2
    done
    prepare_db "s$k" "n$L" "$(shard_where "$L" "$k")"
  done
}
# wait_published VAR L: seconds until every shard has the model server's last heartbeat
wait_published() {
  local -n _wp=$1; local L=$2 want k t0 deadline=$((SECONDS + 180))
  t0=$(now)
  want=$(Q model "n$L" -c 'SELECT refreshed_at FROM personalize.global_model_state')
  for k in $(seq 1 "$L"); do
    until [ "$(Q "s$k" "n$L" -c 'SELECT refreshed_at FROM personalize.global_model_state')" = "$want" ]; do
      [ $SECONDS -lt $deadline ] || die "n$L: the round's lists do not reach s$k in 180 s"; sleep 0.05
    done
  done
  _wp=$(since "$t0")
}
run_details() {   # cluster db: the last refresh run's details
  Q "$1" "$2" -c "SELECT concat_ws('|', coalesce(details->>'dirty_taken', ''), coalesce(details->>'products_summed', ''), coalesce(details->>'neighbor_lists', ''), status)
                  FROM personalize.maintenance_runs WHERE job = 'refresh' ORDER BY run_id DESC LIMIT 1"
}
mark_all_dirty="INSERT INTO personalize.dirty_products (product_id) SELECT product_id FROM personalize.item_counts_base ON CONFLICT DO NOTHING"

if [ ${#layouts[@]} -gt 0 ]; then
  say "single server: catalog, customers, $ne events"
  new_db single single
  Q single single -c 'CREATE EXTENSION personalize' -c "$products_sql" >/dev/null || die "extension on single"
  prepare_db single single true
  load_events "T[single.load]" single single 1 "$ne" true
  timed "T[single.fold]" single single -c 'SELECT personalize.fold_deltas()'
  timed "T[single.vacuum]" single single -c 'VACUUM ANALYZE'
  timed "T[single.first]" single single -c 'CALL personalize.refresh()'
  T[single.first_runs]=$(run_details single single)
  for L in "${layouts[@]}"; do
    say "layout of $L shard(s): setup, load, fold, first round"
    setup_layout "$L"
    folds=() loads=()
    for k in $(seq 1 "$L"); do
      load_events t "s$k" "n$L" 1 "$ne" "$(shard_where "$L" "$k")"; loads+=("$t")
      T[n$L.s$k.events]=$(Q "s$k" "n$L" -c 'SELECT count(*) FROM personalize.interactions')
    done
    for k in $(seq 1 "$L"); do timed t "s$k" "n$L" -c 'SELECT personalize.fold_deltas()'; folds+=("$t"); done
    for k in $(seq 1 "$L"); do Q "s$k" "n$L" -c 'VACUUM ANALYZE' >/dev/null; done
    # the shard's refresh() (a fold): what the brief's "fold on the shards" runs; nothing left
    for k in $(seq 1 "$L"); do Q "s$k" "n$L" -c 'CALL personalize.refresh()' >/dev/null || die "refresh on s$k/n$L"; done
    T[n$L.load]=$(sum "${loads[@]}") T[n$L.load_max]=$(maxof "${loads[@]}")
    T[n$L.fold]=$(sum "${folds[@]}") T[n$L.fold_max]=$(maxof "${folds[@]}")
    T[n$L.shard_pairs]=$(for k in $(seq 1 "$L"); do Q "s$k" "n$L" -c 'SELECT count(*) FROM personalize.pair_counts_base'; done | awk '{ s += $1 } END { print s }')
    timed "T[n$L.first]" model "n$L" -c 'CALL personalize.refresh()'
    T[n$L.first_runs]=$(run_details model "n$L")
    wait_published "T[n$L.first_pub]" "$L"
    T[n$L.model_pairs]=$(Q model "n$L" -c 'SELECT count(*) FROM personalize.pair_counts_base')
  done
  T[single.pairs]=$(Q single single -c 'SELECT count(*) FROM personalize.pair_counts_base')
fi

# --- B: the global round as shards grow -----------------------------------------------------
if has B; then
  say "B: $rounds full rounds each, alternating"
  order=(single "${layouts[@]}")
  declare -A full=() inc=() incfold=() incpub=() fullpub=()
  for r in $(seq 1 "$rounds"); do
    seq_=("${order[@]}"); [ $((r % 2)) = 0 ] && mapfile -t seq_ < <(printf '%s\n' "${order[@]}" | tac)
    for x in "${seq_[@]}"; do
      if [ "$x" = single ]; then
        Q single single -c "$mark_all_dirty" >/dev/null
        timed t single single -c 'CALL personalize.refresh()'
      else
        timed t model "n$x" -c 'CALL personalize.global_refresh(all_products => true)'
        T[n$x.full_runs]=$(run_details model "n$x")
        wait_published p "$x"; fullpub[$x]+=" $p"
      fi
      full[$x]+=" $t"
    done
  done
  T[single.full_runs]=$(run_details single single)
  say "B: $rounds incremental rounds after 1% more events each"
  step=$(( (ne + 99) / 100 ))
  for r in $(seq 1 "$rounds"); do
    first=$((ne + (r - 1) * step + 1))
    load_events t single single "$first" "$step" true
    for L in "${layouts[@]}"; do
      for k in $(seq 1 "$L"); do load_events t "s$k" "n$L" "$first" "$step" "$(shard_where "$L" "$k")"; done
    done
    seq_=("${order[@]}"); [ $((r % 2)) = 0 ] && mapfile -t seq_ < <(printf '%s\n' "${order[@]}" | tac)
    for x in "${seq_[@]}"; do
      if [ "$x" = single ]; then
        timed f single single -c 'SELECT personalize.fold_deltas()'
        timed t single single -c 'CALL personalize.refresh()'
        T[single.inc_runs]=$(run_details single single)
      else
        folds=()
        for k in $(seq 1 "$x"); do timed f "s$k" "n$x" -c 'CALL personalize.refresh()'; folds+=("$f"); done
        f=$(sum "${folds[@]}")
        timed t model "n$x" -c 'CALL personalize.refresh()'
        T[n$x.inc_runs]=$(run_details model "n$x")
        wait_published p "$x"; incpub[$x]+=" $p"
      fi
      inc[$x]+=" $t"; incfold[$x]+=" $f"
    done
  done
  # shellcheck disable=SC2086 # the lists of times are words
  {
    s_first=${T[single.first]} s_full=$(median ${full[single]}) s_inc=$(median ${inc[single]})
    s_fold_all=$(awk -v a="${T[single.fold]}" -v b="${T[single.first]}" 'BEGIN { printf "%.3f", a + b }')
    report "### B. The global round as shards grow (1, 2, 3 shards) against a single server's refresh()"
    report ""
    stamp ""
    report ""
    report "After the load (every product dirty). _fold_: fold_deltas() on each shard, summed (slowest shard); _first round_: the model server's first CALL personalize.refresh(); _full round_: the median of $rounds CALL personalize.global_refresh(all_products => true) (the single server: every product marked dirty, then CALL refresh()), in alternating order; _to every shard_: from the end of the round until every shard has its heartbeat (logical replication of the lists). Pairs: pair_counts_base rows summed over the shards / on the model server (the rows a full round pulls and sums)."
    report ""
    report "| layout | events per shard | load s (sum) | fold s (sum; slowest) | first round s | × single | full round s | × single | to every shard s | products summed | neighbour lists | pairs on the shards / on the model |"
    report "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    IFS='|' read -r _ _ sl _ <<< "${T[single.first_runs]}"
    report "| single server | $ne | ${T[single.load]} | ${T[single.fold]} | $s_first | 1.00 | $s_full | 1.00 | | | $sl | ${T[single.pairs]} |"
    for L in "${layouts[@]}"; do
      per=$(for k in $(seq 1 "$L"); do printf '%s ' "${T[n$L.s$k.events]}"; done | sed 's/ $//; s/ / \/ /g')
      IFS='|' read -r _ ps nl st <<< "${T[n$L.first_runs]}"
      report "| $L shard(s) | $per | ${T[n$L.load]} | ${T[n$L.fold]}; ${T[n$L.fold_max]} | ${T[n$L.first]} | $(div "${T[n$L.first]}" "$s_first") | $(median ${full[$L]}) | $(div "$(median ${full[$L]})" "$s_full") | $(median ${fullpub[$L]}) | $ps | $nl | ${T[n$L.shard_pairs]} / ${T[n$L.model_pairs]} |"
      [ "$st" = succeeded ] || say "warning: n$L's first round: $st"
    done
    report ""
    report "Fold + first round together: single server $s_fold_all s$(for L in "${layouts[@]}"; do printf '; %s shard(s) %s s (%s×; the folds in parallel, as on separate machines: %s s, %s×)' "$L" \
      "$(awk -v a="${T[n$L.fold]}" -v b="${T[n$L.first]}" 'BEGIN { printf "%.3f", a + b }')" \
      "$(div "$(awk -v a="${T[n$L.fold]}" -v b="${T[n$L.first]}" 'BEGIN { print a + b }')" "$s_fold_all")" \
      "$(awk -v a="${T[n$L.fold_max]}" -v b="${T[n$L.first]}" 'BEGIN { printf "%.3f", a + b }')" \
      "$(div "$(awk -v a="${T[n$L.fold_max]}" -v b="${T[n$L.first]}" 'BEGIN { print a + b }')" "$s_fold_all")"; done)."
    report ""
    report "Incremental: $rounds rounds, each after $step more events (1%) sent to every layout and the single server; medians. _fold_: the shards' CALL personalize.refresh() summed (the single server: fold_deltas()); _round_: the model server's CALL personalize.refresh() (the single server: CALL refresh()). The rows: the last round's maintenance_runs.details."
    report ""
    report "| layout | fold s | round s | × single | to every shard s | dirty taken | products summed | neighbour lists |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|"
    IFS='|' read -r _ _ sl _ <<< "${T[single.inc_runs]}"
    report "| single server | $(median ${incfold[single]}) | $s_inc | 1.00 | | | | $sl |"
    for L in "${layouts[@]}"; do
      IFS='|' read -r dt ps nl _ <<< "${T[n$L.inc_runs]}"
      report "| $L shard(s) | $(median ${incfold[$L]}) | $(median ${inc[$L]}) | $(div "$(median ${inc[$L]})" "$s_inc") | $(median ${incpub[$L]}) | $dt | $ps | $nl |"
    done
    report ""
    # the curve's data: shards, first round, full round (median), incremental round (median), single's three
    for L in "${layouts[@]}"; do
      echo "$L ${T[n$L.first]} $(median ${full[$L]}) $(median ${inc[$L]}) $s_first $s_full $s_inc"
    done > "$out/sharding.dat"
    if command -v gnuplot >/dev/null; then
      gnuplot -e "datafile='$out/sharding.dat'; outfile='$out/sharding.png'" "$here/sharding.gp" 2>>"$log/gnuplot.log" &&
        report "The curve: $out/sharding.png (test/bench/sharding.gp)." && report ""
    fi
  }
fi

# --- A: routing overhead --------------------------------------------------------------------
# pgbench_round label cluster db script [pgbench args]: one run, 2 clients
pgb() {
  local label=$1 c=$2 d=$3 f=$4; shift 4
  pgbench -n -M prepared -h 127.0.0.1 -p "${shc_port[$c]}" -c 2 -j 2 -T "$dur" "$@" -f "$f" \
    -l --log-prefix="$log/lat_$label" "$d" > "$log/pgbench_$label.txt" 2>&1 ||
    { tail -n 5 "$log/pgbench_$label.txt" >&2; die "pgbench $label failed"; }
}
# pct files...: p50 p99 (ms) calls
pct() { cat "$@" | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END {
  i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999); printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'; }
tps() { awk '/^tps/ { s += $3; n++ } END { if (n) printf "%.0f", s / n }' "$@"; }
# alternate key rounds targets...: each target "key:cluster:db:script[:pgbench args]"; warm-up first
alternate() {
  local key=$1 r t k c d f a pa; shift
  local targets=("$@") seq_
  dur=3
  for t in "${targets[@]}"; do
    IFS=: read -r k c d f a <<< "$t"; read -r -a pa <<< "$a"
    pgb "warm_${key}_$k" "$c" "$d" "$f" "${pa[@]}"
  done
  rm -f "$log"/lat_warm_*
  dur=$duration
  for r in $(seq 1 "$rounds"); do
    seq_=("${targets[@]}"); [ $((r % 2)) = 0 ] && mapfile -t seq_ < <(printf '%s\n' "${targets[@]}" | tac)
    for t in "${seq_[@]}"; do
      IFS=: read -r k c d f a <<< "$t"; read -r -a pa <<< "$a"
      pgb "${key}_${k}_r$r" "$c" "$d" "$f" "${pa[@]}"
    done
  done
}
# row key label: | label | p50 | p99 | tps | calls | p50 × base | p99 × base | tps × base |
lat_row() {
  local k=$1 label=$2 base=$3 p50 p99 n t b50 b99 bn bt
  read -r p50 p99 n <<< "$(pct "$log"/lat_"${k}"_r*)"
  t=$(tps "$log"/pgbench_"${k}"_r*.txt)
  read -r b50 b99 bn <<< "$(pct "$log"/lat_"${base}"_r*)"
  bt=$(tps "$log"/pgbench_"${base}"_r*.txt)
  report "| $label | $p50 | $p99 | $t | $n | $(div "$p50" "$b50") | $(div "$p99" "$b99") | $(div "$t" "$bt") |"
}

if has A; then
  say "A: routing overhead, $rounds rounds of $duration s per path"
  # the customers (with events) of the 2-shard layout's first shard: the same sample on
  # the single server, that shard and the router, so that every path answers the same calls
  sample_sql="CREATE TABLE IF NOT EXISTS bench.sample_customers (i integer PRIMARY KEY, customer_id bigint NOT NULL)"
  Q router n2 -c 'CREATE SCHEMA IF NOT EXISTS bench' -c "$sample_sql" >/dev/null || die "sample table on the router"
  Q single single -c "$sample_sql" >/dev/null || die "sample table on the single server"
  Q s1 n2 -c "$sample_sql" >/dev/null || die "sample table on s1"
  Q s1 n2 -c "COPY (SELECT row_number() OVER (ORDER BY customer_id), customer_id FROM personalize.customers c
                    WHERE EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = c.customer_id)) TO STDOUT" > "$log/sample_a.tsv" || die "sample"
  for cd in "single single" "router n2" "s1 n2"; do
    read -r c d <<< "$cd"
    Q "$c" "$d" -c 'TRUNCATE bench.sample_customers' -c '\copy bench.sample_customers FROM '"'$log/sample_a.tsv'" -c 'ANALYZE bench.sample_customers' >/dev/null ||
      die "sample on $c/$d"
  done
  na=$(wc -l < "$log/sample_a.tsv")
  same_q="SELECT md5(string_agg(r::text, ';' ORDER BY s.i, o)) FROM bench.sample_customers s,
          LATERAL personalize.recommend(s.customer_id, NULL, 10) WITH ORDINALITY r(product_id, score, reason, o) WHERE s.i <= 300"
  a_same=$( { Q single single -c "$same_q"; Q router n2 -c "$same_q"; Q s1 n2 -c "$same_q"; } | sort -u | wc -l)
  alternate rec "single:single:single:$here/recommend.pgbench:-Dn=$na" \
                "shard:s1:n2:$here/recommend.pgbench:-Dn=$na" \
                "router:router:n2:$here/recommend.pgbench:-Dn=$na"
  cat > "$log/log_event.pgbench" <<'EOF'
-- one 'view' of a random customer of the sample (bench.sample_customers, 1..:n) and a random product
\set i random(1, :n)
\set p random(1, :np)
SELECT personalize.log_event((SELECT customer_id FROM bench.sample_customers WHERE i = :i), :p, 'view');
EOF
  alternate ing "single:single:single:$log/log_event.pgbench:-Dn=$na -Dnp=$np" \
                "shard:s1:n2:$log/log_event.pgbench:-Dn=$na -Dnp=$np" \
                "router:router:n2:$log/log_event.pgbench:-Dn=$na -Dnp=$np"
  report "### A. Routing overhead: single server, one shard direct, through the PL/Proxy router (2 shards)"
  report ""
  stamp ""
  report ""
  report "The 2-shard layout of B (model server, shards s1 and s2, each its own cluster) and the router database in a cluster of its own; the single server holds all the data. Every path gets the same calls: $na customers with events, all on shard s1 (half the data), drawn at random. pgbench -M prepared, 2 clients (-j 2), $rounds alternating rounds of $duration s per path after a 3 s warm-up. recommend() answers for 300 of them identical on the three paths: $([ "$a_same" = 1 ] && echo yes || echo NO)."
  report ""
  report "| recommend(c) | p50 ms | p99 ms | tps | calls | p50 × single | p99 × single | tps × single |"
  report "|---|---:|---:|---:|---:|---:|---:|---:|"
  lat_row rec_single "single server, direct" rec_single
  lat_row rec_shard "shard s1, direct (half the data)" rec_single
  lat_row rec_router "router → shard s1 (PL/Proxy)" rec_single
  report ""
  report "| log_event(c, p, 'view') | p50 ms | p99 ms | tps | calls | p50 × single | p99 × single | tps × single |"
  report "|---|---:|---:|---:|---:|---:|---:|---:|"
  lat_row ing_single "single server, direct" ing_single
  lat_row ing_shard "shard s1, direct" ing_single
  lat_row ing_router "router → shard s1 (PL/Proxy)" ing_single
  report ""
  report "PL/Proxy's own cost (router against the shard direct): recommend p50 $(div "$(pct "$log"/lat_rec_router_r* | cut -d' ' -f1)" "$(pct "$log"/lat_rec_shard_r* | cut -d' ' -f1)")×, log_event p50 $(div "$(pct "$log"/lat_ing_router_r* | cut -d' ' -f1)" "$(pct "$log"/lat_ing_shard_r* | cut -d' ' -f1)")×."
  report ""
fi

# --- C: the single-server path before and after issue 15 -------------------------------------
if has C; then
  say "C: $before against HEAD, the same data"
  sides=(before after)
  declare -A cl=([before]=old [after]=single)
  declare -A C_=()
  # the load, its fold and the first refresh are one-off steps: each round loads a fresh
  # database per side (in alternating order, so that one side's autovacuum after its load
  # falls on the other as often); the later steps use the first round's databases
  declare -A cload=() cfold=() cfirst=()
  for r in $(seq 1 "$rounds"); do
    seq_=("${sides[@]}"); [ $((r % 2)) = 0 ] && seq_=(after before)
    for s in "${seq_[@]}"; do
      db=c_${s}_$r
      new_db "${cl[$s]}" "$db"
      Q "${cl[$s]}" "$db" -c 'CREATE EXTENSION personalize' -c "$products_sql" >/dev/null || die "extension on $db"
      prepare_db "${cl[$s]}" "$db" true
      C_[$s.scaleout]=$(Q "${cl[$s]}" "$db" -c "SELECT extversion || CASE WHEN to_regproc('personalize.set_node_role') IS NULL THEN ' without' ELSE ' with' END FROM pg_extension WHERE extname = 'personalize'")
      load_events t "${cl[$s]}" "$db" 1 "$ne" true; cload[$s]+=" $t"
      timed t "${cl[$s]}" "$db" -c 'SELECT personalize.fold_deltas()'; cfold[$s]+=" $t"
      Q "${cl[$s]}" "$db" -c 'VACUUM ANALYZE' >/dev/null
      timed t "${cl[$s]}" "$db" -c 'CALL personalize.refresh()'; cfirst[$s]+=" $t"
    done
  done
  for s in "${sides[@]}"; do
    for r in $(seq 2 "$rounds"); do Q "${cl[$s]}" postgres -c "DROP DATABASE c_${s}_$r" >/dev/null || die "dropping c_${s}_$r"; done
    Q "${cl[$s]}" postgres -c "ALTER DATABASE c_${s}_1 RENAME TO c_$s" >/dev/null || die "renaming c_${s}_1"
  done
  declare -A cref=() cpop=()
  for r in $(seq 1 "$rounds"); do
    seq_=("${sides[@]}"); [ $((r % 2)) = 0 ] && seq_=(after before)
    for s in "${seq_[@]}"; do
      Q "${cl[$s]}" "c_$s" -c "$mark_all_dirty" >/dev/null
      timed t "${cl[$s]}" "c_$s" -c 'CALL personalize.refresh()'; cref[$s]+=" $t"
      timed t "${cl[$s]}" "c_$s" -c 'SELECT personalize.refresh_popular()'; cpop[$s]+=" $t"
    done
  done
  for s in "${sides[@]}"; do
    Q "${cl[$s]}" "c_$s" -c "CREATE TABLE bench.sample_customers AS
        SELECT row_number() OVER (ORDER BY customer_id)::integer AS i, customer_id FROM personalize.customers c
        WHERE EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = c.customer_id)" \
      -c 'ALTER TABLE bench.sample_customers ADD PRIMARY KEY (i)' -c 'VACUUM ANALYZE' >/dev/null || die "sample on c_$s"
  done
  ncs=$(Q single c_after -c 'SELECT count(*) FROM bench.sample_customers')
  same_q="SELECT md5(string_agg(r::text, ';' ORDER BY s.i, o)) FROM bench.sample_customers s,
          LATERAL personalize.recommend(s.customer_id, NULL, 10) WITH ORDINALITY r(product_id, score, reason, o) WHERE s.i % 20 = 0"
  c_same=$(for s in "${sides[@]}"; do Q "${cl[$s]}" "c_$s" -c "$same_q"; done | sort -u | wc -l)
  lists_q="SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM (SELECT measure, product_id, neighbor_ids, scores, counts FROM personalize.neighbors) n"
  c_lists=$(for s in "${sides[@]}"; do Q "${cl[$s]}" "c_$s" -c "$lists_q"; done | sort -u | wc -l)
  alternate crec "before:old:c_before:$here/recommend.pgbench:-Dn=$ncs" "after:single:c_after:$here/recommend.pgbench:-Dn=$ncs"
  alternate cins "before:old:c_before:$here/insert.pgbench:-Dnc=$nc -Dnp=$np" "after:single:c_after:$here/insert.pgbench:-Dnc=$nc -Dnp=$np"
  report "### C. The single-server path before issue 15 ($before) and at HEAD ($head_commit)"
  report ""
  stamp ""
  report ""
  report "Two clusters side by side, each loading its own private build (before: extension ${C_[before.scaleout]} the scale-out functions; after: ${C_[after.scaleout]}), the same data in both. Every step $rounds times in alternating order, medians: the load (one INSERT ... SELECT from the generator), its fold and the first refresh() each into a fresh database per side and round, the rest on the first round's databases. pgbench -M prepared, 2 clients, $duration s per round and side after a 3 s warm-up: recommend() for a random customer with events (test/bench/recommend.pgbench, $ncs customers), a single-row INSERT of a 'view' of a random customer and product (test/bench/insert.pgbench). Neighbour lists identical: $([ "$c_lists" = 1 ] && echo yes || echo NO); recommend() answers for every 20th customer identical: $([ "$c_same" = 1 ] && echo yes || echo NO)."
  report ""
  report "| single server | before ($before) | after ($head_commit) | after / before |"
  report "|---|---:|---:|---:|"
  # shellcheck disable=SC2086 # the lists of times are words
  {
    for x in "load through the triggers, one statement:cload" "fold_deltas() after the load:cfold" "first CALL refresh(), every product dirty:cfirst"; do
      label=${x%%:*}; declare -n arr=${x##*:}
      report "| $label, median (s) | $(median ${arr[before]}) | $(median ${arr[after]}) | $(div "$(median ${arr[after]})" "$(median ${arr[before]})") |"
      unset -n arr
    done
    report "| CALL refresh(), every product marked dirty, median (s) | $(median ${cref[before]}) | $(median ${cref[after]}) | $(div "$(median ${cref[after]})" "$(median ${cref[before]})") |"
    report "| refresh_popular(), median (s) | $(median ${cpop[before]}) | $(median ${cpop[after]}) | $(div "$(median ${cpop[after]})" "$(median ${cpop[before]})") |"
  }
  for kind in crec cins; do
    read -r b50 b99 bn <<< "$(pct "$log"/lat_"${kind}"_before_r*)"
    read -r a50 a99 an <<< "$(pct "$log"/lat_"${kind}"_after_r*)"
    bt=$(tps "$log"/pgbench_"${kind}"_before_r*.txt); at=$(tps "$log"/pgbench_"${kind}"_after_r*.txt)
    what=$([ $kind = crec ] && echo "recommend()" || echo "INSERT of one event")
    report "| $what p50 (ms) | $b50 | $a50 | $(div "$a50" "$b50") |"
    report "| $what p99 (ms) | $b99 | $a99 | $(div "$a99" "$b99") |"
    report "| $what tps ($bn / $an calls) | $bt | $at | $(div "$at" "$bt") |"
  done
  report ""
fi
say "done; raw logs in $log"
