# Throw-away PostgreSQL clusters on 127.0.0.1 for the scale-out tests (issue 15: a model, a
# router and shards), sourced, not run. Each cluster is initdb + pg_ctl in one temporary
# directory, with logical replication on (the shards subscribe to the model) and
# shared_preload_libraries = pg_cron,personalize as the suite's cluster. A private install
# (make install DESTDIR=...) is used when $PERSONALIZE_EXTENSION_DESTDIR names it, else when
# the calling cluster (PG* environment, e.g. pg_virtualenv) has an extension_destdir; by
# default the system's. Ports: free ones from $SHARD_PORT_BASE (default 5650). As root, the
# clusters run as the postgres user. Every wait is bounded. The caller sets `trap shc_stop EXIT`.
#   shc_start NAME [postgresql.conf lines...]  initdb + start; sets shc_port[NAME]
#   shc_psql NAME [psql args...]               psql -X -q -At, ON_ERROR_STOP, to NAME's port
#   shc_stop_one NAME                          immediate stop, the data directory stays
#   shc_restart NAME                           starts NAME again on its port
#   shc_stop                                   stops every cluster (immediate), removes shc_work
#   shc_logs                                   the last lines of each log, as TAP comments
shc_bin=$(/usr/lib/postgresql/15/bin/pg_config --bindir 2>/dev/null || pg_config --bindir)
shc_libdir=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir 2>/dev/null || pg_config --pkglibdir)
shc_destdir=${PERSONALIZE_EXTENSION_DESTDIR-$(psql -X -At -d postgres -c 'SHOW extension_destdir' 2>/dev/null)}
shc_work=
declare -gA shc_port=()
export PGCONNECT_TIMEOUT=10 PGUSER=postgres
unset PGSERVICE

shc_as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
shc_psql() { local name=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${shc_port[$name]:?no cluster $name}" "$@"; }

# the first port from the base that nothing listens on and no cluster of ours holds (a
# stopped one keeps its port for shc_restart)
shc_free_port() {
  local p base=${SHARD_PORT_BASE:-5650}
  for p in $(seq "$base" $((base + 99))); do
    [[ " ${shc_port[*]} " == *" $p "* ]] && continue
    ss -Hltn "sport = :$p" | grep -q . && continue
    echo "$p"; return 0
  done
  echo "shard_clusters: no free port from $base" >&2; return 1
}

shc_start() {
  local name=$1 p preload=personalize; shift
  [[ $name =~ ^[a-z0-9_]+$ ]] || { echo "shard_clusters: bad cluster name '$name'" >&2; return 1; }
  [ -z "${shc_port[$name]:-}" ] || { echo "shard_clusters: $name already exists" >&2; return 1; }
  if [ -z "$shc_work" ]; then
    shc_work=$(mktemp -d /tmp/personalize_shards.XXXXXX) || return 1
    [ "$(id -u)" = 0 ] && chown postgres "$shc_work"
  fi
  p=$(shc_free_port) || return 1
  shc_port[$name]=$p
  # a private install is preloaded by its full path (by name, the system's library would load)
  [ -n "$shc_destdir" ] && [ -f "$shc_destdir$shc_libdir/personalize.so" ] && preload=$shc_destdir$shc_libdir/personalize.so
  shc_as_owner "$shc_bin/initdb" -D "$shc_work/$name" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
    >"$shc_work/initdb_$name.out" 2>&1 || { tail -n 5 "$shc_work/initdb_$name.out" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$shc_work'"
    echo "shared_preload_libraries = 'pg_cron,$preload'"
    echo "cron.database_name = 'postgres'"
    # the shards subscribe to the model's publication (one slot and one worker per table sync)
    echo "wal_level = logical"
    echo "max_replication_slots = 10"
    echo "max_wal_senders = 10"
    echo "max_logical_replication_workers = 8"
    echo "fsync = off"
    [ -n "$shc_destdir" ] && echo "extension_destdir = '$shc_destdir'"
    for p in "$@"; do echo "$p"; done
  } >> "$shc_work/$name/postgresql.conf"
  shc_restart "$name"
}

shc_restart() {
  local name=$1
  [ -n "${shc_port[$name]:-}" ] || { echo "shard_clusters: no cluster $name" >&2; return 1; }
  shc_as_owner timeout 60 "$shc_bin/pg_ctl" -D "$shc_work/$name" -o "-p ${shc_port[$name]}" \
    -l "$shc_work/$name.log" -w -t 30 start >/dev/null
}

shc_stop_one() {
  local name=$1
  [ -n "${shc_port[$name]:-}" ] && [ -f "$shc_work/$name/postmaster.pid" ] || return 0
  shc_as_owner timeout 30 "$shc_bin/pg_ctl" -D "$shc_work/$name" -m immediate -w -t 20 stop >/dev/null 2>&1
}

shc_stop() {
  local name
  [ -n "$shc_work" ] || return 0
  for name in "${!shc_port[@]}"; do shc_stop_one "$name"; done
  rm -rf "$shc_work"
  shc_work=
  shc_port=()
}

# the last lines of the clusters' logs, as TAP comments
shc_logs() { local f; for f in "$shc_work"/*.log; do [ -f "$f" ] && tail -n 5 "$f" | sed "s|^|# $(basename "$f"): |"; done; }
