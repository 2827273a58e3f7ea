#!/bin/sh
# Runs once, when the postgres volume is first initialised: MLflow gets its own database.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=mlflow_db="$MLFLOW_DB" <<'SQL'
CREATE DATABASE :"mlflow_db";
SQL
