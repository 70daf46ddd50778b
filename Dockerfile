# One image for every role of the replicated log: name server, master, secondary.
#
#   docker build -t replog:latest .                                  # public base (python:3.11-slim)
#   docker build --build-arg BASE_IMAGE=replog-base:bookworm -t replog:latest .   # local base
#
# scripts/docker-build.sh does the whole thing without a registry: it builds replog-base:bookworm
# with debootstrap, downloads the wheels into wheels/ and builds this file with the local base.
#
# Python dependencies: [project].dependencies of pyproject.toml. When wheels/ holds *.whl files
# they are installed from there with --no-index (no network needed inside the build); when it is
# empty they come from PyPI.
#
# Written for the classic builder as well as BuildKit (no heredocs, no RUN --mount, no syntax line).

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="replog" \
      org.opencontainers.image.description="teaching-grade replicated log: name server, master, secondary"

# Used only when pyproject.toml is missing from the build context.
ARG FALLBACK_DEPS="Pyro5==5.17 serpent==1.43 bottle==0.13.4 loguru==0.7.3 gevent==26.9.0 greenlet==3.5.6"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8

# A venv makes Debian's externally-managed python3 and the python:3.11-slim one behave the same.
# /data belongs to the node's user: a new named volume mounted there (docker-compose.yml,
# REPLOG_DATA_DIR=/data) copies this owner, so the node can write its log into it.
RUN python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin replog \
 && mkdir -p /data && chown replog:replog /data && chmod 0750 /data

# wheels/ always exists (wheels/.gitkeep); the glob makes pyproject.toml optional for COPY.
COPY wheels pyproject.tom[l] /build/
RUN set -eu; \
    cd /build; \
    if [ -f pyproject.toml ]; then \
        python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb")).get("project", {}).get("dependencies", []); print("\n".join(deps))' > requirements.txt; \
    fi; \
    if [ ! -s requirements.txt ]; then \
        printf '%s\n' ${FALLBACK_DEPS} > requirements.txt; \
    fi; \
    echo "installing:"; sed 's/^/  /' requirements.txt; \
    if ls /build/*.whl >/dev/null 2>&1; then \
        pip install --no-index --find-links /build -r requirements.txt; \
    else \
        pip install -r requirements.txt; \
    fi; \
    pip check; \
    cd /; rm -rf /build

WORKDIR /app
COPY nodes/ /app/nodes/
COPY nameserver/ /app/nameserver/
COPY examples/ /app/examples/
COPY replog_cli/ /app/replog_cli/
COPY replog_client/ /app/replog_client/
RUN python -m compileall -q /app \
 && chmod -R a+rX,go-w /app \
 && install -d -o replog -g replog -m 0755 /certs \
 && install -d -o replog -g replog -m 0700 /ca

USER replog

# Role-specific health checks live in docker-compose.yml (the name server has no HTTP port).
CMD ["python", "-m", "nodes.master_node", "--help"]
