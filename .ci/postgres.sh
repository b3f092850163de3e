#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the OMOP tests.
#   .ci/postgres.sh start DIR   -> installs the Debian packages when missing, creates a cluster
#                                  in DIR, starts it on 127.0.0.1, creates role and database
#                                  crs_ml, and prints the environment for the tests (eval it)
#   .ci/postgres.sh stop DIR
# The password is random, kept in DIR and given to the tests only as PGPASSWORD.
set -euo pipefail
cmd=${1:?start or stop}; dir=${2:?data folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$cmd" = stop ]; then
  [ -n "$bin" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  exit 0
fi
if [ -z "$bin" ]; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update >&2 && $sudo apt-get install -y postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
port=${CRS_ML_PG_PORT:-54329}
pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
printf '%s' "$pw" > "$dir/pw" && chmod 600 "$dir/pw"
as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >&2
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >&2
as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE crs_ml LOGIN PASSWORD '$pw'" -c "CREATE DATABASE crs_ml OWNER crs_ml" >&2
echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=crs_ml PGDATABASE=crs_ml PGPASSWORD=$pw"
echo "export CRS_ML_TEST_PG_URL=postgresql://crs_ml@127.0.0.1:$port/crs_ml"
