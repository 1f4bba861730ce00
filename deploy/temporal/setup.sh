#!/bin/sh
# Create or update the Temporal schemas in PostgreSQL: the `temporal` database (persistence) and
# `temporal_visibility` (visibility, which holds the search attributes). Runs once per
# `docker compose up` in the temporalio/admin-tools image, before the server starts.
#
# Safe to run again: an existing database is kept, `setup-schema -v 0.0` leaves a newer schema
# alone, and `update-schema` applies only the versions the database lacks (so a newer server
# image brings its schema changes with it).
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${POSTGRES_PWD:?set POSTGRES_PWD}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_DIR="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

# temporal-sql-tool reads the password from SQL_PASSWORD, so it stays off the command line.
SQL_PASSWORD="$POSTGRES_PWD"
export SQL_PASSWORD

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

attempt=1
until nc -z -w 5 "$POSTGRES_SEEDS" "$DB_PORT"; do
    if [ "$attempt" -ge 30 ]; then
        echo "PostgreSQL at $POSTGRES_SEEDS:$DB_PORT did not answer" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

for pair in temporal:temporal temporal_visibility:visibility; do
    database="${pair%%:*}"
    versions="$SCHEMA_DIR/${pair##*:}/versioned"
    echo "schema of $database from $versions"
    sql_tool --db "$database" create
    sql_tool --db "$database" setup-schema -v 0.0
    sql_tool --db "$database" update-schema -d "$versions"
done
echo "Temporal schemas are up to date"
