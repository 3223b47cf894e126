#!/usr/bin/env bash
# The prod topology on one machine, from Debian packages: a PostgreSQL server with one database
# each for Dagster, MLflow and Optuna, and an MLflow tracking server on it that stores and serves
# the artefacts. Everything listens on 127.0.0.1. The tests and `make bench` use it; on a
# cluster the same services come from deploy/docker-compose.yaml or deploy/helm-values.yaml.
#
#   deploy/stack.sh start DIR [PG_PORT] [MLFLOW_PORT]   start; write DIR/stack.env
#   deploy/stack.sh restart-db DIR [DOWN_SECONDS]       restart PostgreSQL (fast shutdown),
#                                                       down for DOWN_SECONDS (default 0)
#   deploy/stack.sh stop DIR                            stop both
#
# DIR/stack.env holds the environment a client needs (`set -a; . DIR/stack.env; set +a`):
# ALPHAFORGE_DEPLOYMENT=prod, ALPHAFORGE_PG_*, ALPHAFORGE_MLFLOW_URI. The local server trusts
# loopback connections and has no password; a shared server sets ALPHAFORGE_PG_PASSWORD.
# Needs: postgresql (Debian: apt-get install postgresql), and mlflow on PATH or in $MLFLOW.
set -euo pipefail

cmd=${1:?usage: stack.sh start|stop|restart-db DIR [PG_PORT] [MLFLOW_PORT]}
dir=$(mkdir -p "${2:?DIR missing}" && cd "$2" && pwd)
pg_port=${3:-5432}
mlflow_port=${4:-5000}
user=alphaforge
databases="alphaforge_dagster alphaforge_mlflow alphaforge_optuna"

pg_bin() {  # Debian keeps the server programs off PATH, under /usr/lib/postgresql/<version>/bin
  local found
  found=$(command -v pg_ctl 2>/dev/null || true)
  if [ -n "$found" ]; then dirname "$(readlink -f "$found")"; return; fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || { echo "stack.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 3; }
  echo "$found"
}

as_pg() {  # PostgreSQL refuses to run as root: run its programs as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The data folder lives outside DIR: a test's DIR may sit under a folder only root can enter.
pgdata_of() { cat "$dir/pgdata.path"; }

case "$cmd" in
  start)
    bin=$(pg_bin)
    pgdata=$(mktemp -d -t alphaforge-pg.XXXXXX)
    echo "$pgdata" > "$dir/pgdata.path"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
    as_pg "$bin/initdb" -D "$pgdata" -U "$user" --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    echo "-p $pg_port -k $pgdata -c listen_addresses=127.0.0.1" > "$dir/pg.opts"
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -o "$(cat "$dir/pg.opts")" start >/dev/null
    for db in $databases; do
      as_pg "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U "$user" "$db"
    done
    mlflow=${MLFLOW:-$(command -v mlflow)}
    mkdir -p "$dir/mlartifacts"
    # no GenAI job runner (seven huey workers, each importing MLflow): nothing here uses it
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup "$mlflow" server \
      --backend-store-uri "postgresql+psycopg2://$user@127.0.0.1:$pg_port/alphaforge_mlflow" \
      --artifacts-destination "$dir/mlartifacts" \
      --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
      >"$dir/mlflow.log" 2>&1 &
    echo $! > "$dir/mlflow.pid"
    for _ in $(seq 1 120); do  # the first start creates MLflow's schema: up to a minute
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$mlflow_port/health', timeout=1)" 2>/dev/null; then
        break
      fi
      kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || { echo "stack.sh: mlflow server died:" >&2; tail -n 20 "$dir/mlflow.log" >&2; exit 4; }
      sleep 1
    done
    cat > "$dir/stack.env" <<EOF
ALPHAFORGE_DEPLOYMENT=prod
ALPHAFORGE_PG_HOST=127.0.0.1
ALPHAFORGE_PG_PORT=$pg_port
ALPHAFORGE_PG_USER=$user
ALPHAFORGE_PG_PASSWORD=
ALPHAFORGE_MLFLOW_URI=http://127.0.0.1:$mlflow_port
EOF
    echo "PostgreSQL on 127.0.0.1:$pg_port ($databases), MLflow on http://127.0.0.1:$mlflow_port"
    echo "environment: $dir/stack.env"
    ;;
  restart-db)
    bin=$(pg_bin)
    as_pg "$bin/pg_ctl" -D "$(pgdata_of)" -m fast -w stop >/dev/null
    sleep "${3:-0}"
    as_pg "$bin/pg_ctl" -D "$(pgdata_of)" -l "$(pgdata_of)/server.log" -w -o "$(cat "$dir/pg.opts")" start >/dev/null
    ;;
  stop)
    if [ -f "$dir/mlflow.pid" ]; then
      pid=$(cat "$dir/mlflow.pid")
      pkill -TERM -P "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      rm -f "$dir/mlflow.pid"
    fi
    if [ -f "$dir/pgdata.path" ]; then
      pgdata=$(pgdata_of)
      as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
      rm -rf "$pgdata" "$dir/pgdata.path"
    fi
    ;;
  *)
    echo "stack.sh: unknown command $cmd (start, stop, restart-db)" >&2; exit 2
    ;;
esac
