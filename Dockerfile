# ctxlog as a container: ctxlog serve on 0.0.0.0:8080, API keys required, the SQLite log on
# the /data volume (or PostgreSQL: CTXLOG_DB=postgresql://...), JSON logs, /readyz as the
# health check.
#   docker build -t ctxlog .
#   docker run -p 127.0.0.1:8080:8080 -e CTXLOG_API_KEYS=key:tenant:actor -v ctxlog:/data ctxlog
# BASE selects the base image (any Debian-based image with python3 >= 3.11 and venv):
# the official python image by default; the tests build FROM a local one made from Debian
# packages (scripts/container/base-image.sh) where no registry is reachable.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# A CA bundle for pip behind a TLS-inspecting proxy, mounted for the build only
# (podman build -v /path/ca.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt);
# it never reaches the final image.
ARG PIP_CERT
ENV PIP_CERT=${PIP_CERT} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/ctxlog
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eventstore ./eventstore
COPY projections ./projections
COPY api ./api
# Not editable: the wheel carries exactly the packages pyproject.toml finds.
RUN /opt/ctxlog/bin/pip install --no-cache-dir ".[postgres]"

FROM ${BASE}
# The venv's interpreter is the base image's: the same BASE in both stages.
COPY --from=build /opt/ctxlog /opt/ctxlog
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin ctxlog \
    && mkdir -p /data && chown ctxlog:ctxlog /data && chmod 0700 /data
ENV PATH=/opt/ctxlog/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CTXLOG_HOST=0.0.0.0 \
    CTXLOG_PORT=8080 \
    CTXLOG_DB=/data/ctxlog.db \
    CTXLOG_LOG_FORMAT=json \
    CTXLOG_ALLOWED_HOSTS=localhost
# CTXLOG_ALLOWED_HOSTS: the names clients reach the server by (the compose service name, a
# Kubernetes Service or ingress host); loopback names always pass. Binding 0.0.0.0 without
# CTXLOG_API_KEYS (or CTXLOG_API_KEYS_FILE) is refused at start: keys are required here.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ctxlog"]
CMD ["serve"]
