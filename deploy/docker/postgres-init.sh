#!/usr/bin/env bash
# Run once by the postgres image when its volume is first initialised (docker-entrypoint-initdb.d):
# one login role and one database per service, and no role may connect to another's database, so
# "never share a database" holds inside the one server too. A later password change in .env does
# not reach an existing volume: ALTER ROLE by hand, or start from a new volume.
set -eo pipefail  # no -u: the postgres entrypoint sources a script that is not executable
for service in customer account order orchestrator; do
  password_var="${service^^}_DB_PASSWORD"
  psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set service="$service" --set password="${!password_var:?$password_var is not set}" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
