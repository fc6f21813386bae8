# syntax=docker/dockerfile:1
# One image for the whole Dagster deployment on ECS (Dagster's ECS shape): the webserver, the
# daemon, the ingestion worker and every run task start from it with different commands, and the
# code location (pipeline_defs.definitions, see workspace.yaml) is loaded from the installed
# package. The HTTP API (uvicorn tidelake.api:app) runs from the same image.
#
#   docker build -t tidelake:$(git rev-parse --short HEAD) .
#
# Commands (set by terraform/modules/dagster and terraform/modules/api):
#   webserver  dagster-webserver -h 0.0.0.0 -p 3000 -w /opt/tidelake/workspace.yaml
#   daemon     dagster-daemon run -w /opt/tidelake/workspace.yaml
#   worker     tidelake ingest --follow   (records batches in Postgres: needs dagster-postgres)
#   run        set by the EcsRunLauncher (dagster api execute_run ...)
#   api        uvicorn tidelake.api:app --host 0.0.0.0 --port 8000

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# dagster-postgres is needed only here (Postgres run/event storage), so it is not a dependency of
# the package; its 0.x line moves in lockstep with dagster 1.x (1.13 <-> 0.29).
RUN pip install . "dagster-postgres>=0.29,<0.30"

FROM python:3.11-slim-bookworm

# HOME=/tmp: the root filesystem is read-only on ECS and /tmp is the task's scratch volume, so
# anything a library caches under ~ (e.g. DuckDB extensions) lands somewhere writable.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    HOME=/tmp \
    TIDELAKE_DBT_PROJECT_DIR=/opt/tidelake/dbt_project \
    DBT_TARGET_PATH=/tmp/dbt-target \
    DBT_LOG_PATH=/tmp/dbt-logs

RUN groupadd --system --gid 10001 tidelake \
    && useradd --system --uid 10001 --gid tidelake --no-create-home --shell /usr/sbin/nologin tidelake

COPY --from=build /opt/venv /opt/venv
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
WORKDIR /opt/tidelake
COPY workspace.yaml ./
COPY dbt_project ./dbt_project
# The dbt manifest is parsed here, once: the root filesystem is read-only at run time, and a
# current manifest (with its digest) makes loading the definitions write nothing. dbt's per-run
# target and log folders go to /tmp (DBT_TARGET_PATH, DBT_LOG_PATH above).
RUN python -c "from assets.dbt import dbt_project, ensure_manifest; ensure_manifest(dbt_project())"

USER 10001:10001
EXPOSE 3000 8000

# ECS runs the health checks (the load balancers' target groups and the container health checks
# in the task definitions); a Docker HEALTHCHECK would apply to all roles of this image alike.
HEALTHCHECK NONE

CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/tidelake/workspace.yaml"]
