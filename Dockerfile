# hub-mirror-bot in a container: `mirror-bot run` as a non-root user, the SQLite file on /data,
# /metrics and /healthz on MIRROR_METRICS_PORT.
#
#   docker build -t hub-mirror-bot .
#   docker build --build-arg BASE_IMAGE=registry.example.com/library/python:3.11-slim .
#
# BASE_IMAGE is any Debian-like Python 3.11 image with `python -m venv` (the official slim one by
# default; a mirror of it where Docker Hub is slow). The dependencies, every chat platform's
# extra among them (the image runs every platform), are the exact versions of
# requirements.lock, each checked against its sha256 (`--require-hashes`), so a build next
# month installs what the tests ran with; regenerate the lock with `bash scripts/dev.sh lock`.
# PIP_INSTALL_OPTIONS passes options to that pip, e.g. `--index-url
# https://mirrors.example.com/pypi/simple` (a mirror serves the same files, so the hashes hold) or,
# for an offline build, `--no-index --find-links /src/wheels` with the locked wheels in ./wheels
# of the build context (`pip download --no-deps --require-hashes -r requirements.lock -d wheels`).

ARG BASE_IMAGE=python:3.11-slim

# -- build: the package and its dependencies in a venv, no compilers or caches carried over --
FROM ${BASE_IMAGE} AS build
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . /src
# The lock holds every dependency, the chat platforms' extras (lark-oapi for [feishu]) and the
# build backend (setuptools), so the project itself installs with no index and no unhashed
# download: --no-deps, --no-build-isolation; every adapter is there, configured or not.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install ${PIP_INSTALL_OPTIONS} --require-hashes --no-deps \
      -r /src/requirements.lock \
 && /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation /src

# -- run ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
# uid/gid 10001, written directly so the base needs no useradd; HOME is the volume, so
# ~/.docker/config.json (push credentials) and ~/.ssh (DOCKER_HOST=ssh://) live there too.
RUN echo "mirror:x:10001:10001:hub-mirror-bot:/data:/bin/sh" >> /etc/passwd \
 && echo "mirror:x:10001:" >> /etc/group \
 && mkdir -p /data \
 && chown 10001:10001 /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    MIRROR_DB=/data/mirror.db \
    MIRROR_METRICS_PORT=9090
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9090
# Python's stdlib, since slim images have no curl: exits non-zero unless /healthz says 200.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['MIRROR_METRICS_PORT'], timeout=8)"]
ENTRYPOINT ["mirror-bot"]
CMD ["run"]
