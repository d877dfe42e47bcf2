# A primary and a streaming replica on 127.0.0.1, for test/scripts/standby.sh and
# test/bench/standby.sh (sourced, not run). initdb + pg_ctl in a temporary directory, the
# replica from pg_basebackup -R; shared_preload_libraries = pg_cron,personalize as the
# suite's cluster. A private install (make install DESTDIR=...) is used when
# $PERSONALIZE_EXTENSION_DESTDIR names it, else when the calling cluster (PG* environment,
# e.g. pg_virtualenv) has an extension_destdir; by default the system's. Ports: the first
# two free ones from $STANDBY_PORT_BASE (default 5600). As root, the clusters run as the
# postgres user. Every wait is bounded. The caller sets `trap sc_stop EXIT`.
#   sc_primary [postgresql.conf lines...]   sets sc_work, P, S; starts the primary on P
#   sc_standby                              base backup of the primary, started on S
#   sc_catch_up [seconds]                   waits until S replayed P's current WAL position
#   sc_stop                                 stops both (immediate), removes sc_work
sc_bin=$(/usr/lib/postgresql/15/bin/pg_config --bindir 2>/dev/null || pg_config --bindir)
sc_libdir=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir 2>/dev/null || pg_config --pkglibdir)
sc_destdir=${PERSONALIZE_EXTENSION_DESTDIR-$(psql -X -At -d postgres -c 'SHOW extension_destdir' 2>/dev/null)}
sc_work=
export PGCONNECT_TIMEOUT=10 PGUSER=postgres
unset PGSERVICE

sc_as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sc_psql() { local port=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" "$@"; }

sc_primary() {
  local p preload=personalize
  sc_work=$(mktemp -d /tmp/personalize_standby.XXXXXX) || return 1
  [ "$(id -u)" = 0 ] && chown postgres "$sc_work"
  P= S=
  for p in $(seq "${STANDBY_PORT_BASE:-5600}" $((${STANDBY_PORT_BASE:-5600} + 99))); do
    ss -Hltn "sport = :$p" | grep -q . && continue
    if [ -z "$P" ]; then P=$p; else S=$p; break; fi
  done
  [ -n "$S" ] || { echo "standby_clusters: no two free ports from ${STANDBY_PORT_BASE:-5600}" >&2; return 1; }
  # a private install is preloaded by its full path (by name, the system's library would load)
  [ -n "$sc_destdir" ] && [ -f "$sc_destdir$sc_libdir/personalize.so" ] && preload=$sc_destdir$sc_libdir/personalize.so
  sc_as_owner "$sc_bin/initdb" -D "$sc_work/primary" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$sc_work/initdb.log" 2>&1 || return 1
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$sc_work'"
    echo "shared_preload_libraries = 'pg_cron,$preload'"
    echo "cron.database_name = 'postgres'"
    echo "wal_level = replica"
    echo "hot_standby = on"
    echo "max_wal_senders = 4"
    echo "fsync = off"
    [ -n "$sc_destdir" ] && echo "extension_destdir = '$sc_destdir'"
    for p in "$@"; do echo "$p"; done
  } >> "$sc_work/primary/postgresql.conf"
  sc_as_owner timeout 60 "$sc_bin/pg_ctl" -D "$sc_work/primary" -o "-p $P" -l "$sc_work/primary.log" -w -t 30 start >/dev/null
}

sc_standby() {
  sc_as_owner timeout 300 "$sc_bin/pg_basebackup" -h 127.0.0.1 -p "$P" -U postgres -D "$sc_work/standby" -R -X stream -c fast --no-sync \
    >"$sc_work/basebackup.log" 2>&1 || return 1
  sed -i "s|^unix_socket_directories = .*|unix_socket_directories = '$sc_work/standby'|" "$sc_work/standby/postgresql.conf"
  sc_as_owner timeout 60 "$sc_bin/pg_ctl" -D "$sc_work/standby" -o "-p $S" -l "$sc_work/standby.log" -w -t 30 start >/dev/null
}

sc_catch_up() {
  local lsn deadline=$((SECONDS + ${1:-30}))
  lsn=$(sc_psql "$P" -d postgres -c 'SELECT pg_current_wal_lsn()') || return 1
  while [ $SECONDS -lt $deadline ]; do
    [ "$(sc_psql "$S" -d postgres -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ] && return 0
    sleep 0.2
  done
  return 1
}

sc_stop() {
  local d
  [ -n "$sc_work" ] || return 0
  for d in standby primary; do
    [ -f "$sc_work/$d/postmaster.pid" ] &&
      sc_as_owner timeout 30 "$sc_bin/pg_ctl" -D "$sc_work/$d" -m immediate -w -t 20 stop >/dev/null 2>&1
  done
  rm -rf "$sc_work"
}

# the last lines of the clusters' logs, as TAP comments
sc_logs() { local f; for f in "$sc_work"/*.log; do [ -f "$f" ] && tail -n 5 "$f" | sed "s|^|# $(basename "$f"): |"; done; }
