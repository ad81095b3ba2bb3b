# The production image. The builder stage builds the project's wheel with the image's own
# Python and installs the locked dependencies (requirements/runtime.txt, every file checked
# against its hash) into a virtual environment that the final stage copies: nothing depends
# on the Python or the OS of the machine that builds it. `docker build .` fetches from PyPI;
# scripts/build-image downloads the locked wheels first (build/wheels) and sets PIP_NO_INDEX
# and PIP_FIND_LINKS, which pip reads, so that the build needs no network.
FROM python:3.11-slim AS build
ARG PIP_NO_INDEX=0
ARG PIP_FIND_LINKS=
WORKDIR /src
COPY . .
# The runtime environment gets no pip or setuptools of its own: it holds the lock and the
# project, nothing else. The build tools live in /opt/build, which stays in this stage.
# Every file of the lock is checked against its hash as it is turned into a wheel (a package
# that publishes only a source archive, pure-sasl, is built here with the locked setuptools).
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --require-hashes --wheel-dir /tmp/dist -r requirements/runtime.txt \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir /tmp/dist . \
    && python3 -m venv --without-pip /opt/dubbo-sidecar \
    && /opt/build/bin/pip --python /opt/dubbo-sidecar/bin/python install --no-cache-dir \
        --no-index --no-deps /tmp/dist/*.whl

FROM python:3.11-slim
# iptables for proxy mode's transparent capture (--proxy-capture), the one package fetched
# from the base's Debian mirror. Not pinned: it follows the base's Debian release and its
# security updates. Before the sidecar's own files, so that this layer stays cached. apt's
# caches go too, on any base (python:3.11-slim drops them itself; a plain Debian keeps 80 MB).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# Reading the Docker socket needs its group: docker run --group-add <gid of the socket>.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin \
        sidecar \
    && mkdir -p /var/lib/dubbo-nat-sidecar \
    && chown sidecar:sidecar /var/lib/dubbo-nat-sidecar
COPY --from=build /opt/dubbo-sidecar /opt/dubbo-sidecar
ENV PATH=/opt/dubbo-sidecar/bin:$PATH
USER 10001
VOLUME ["/var/lib/dubbo-nat-sidecar"]
EXPOSE 9477
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["dubbo-sidecar", "health"]
ENTRYPOINT ["dubbo-sidecar"]
CMD ["run"]
# Filled by scripts/build-image: the version from sidecar/__init__.py, the commit, and the
# commit's time as the creation time (the same commit gives the same labels). Last, so that
# a new commit rebuilds no layer.
ARG VERSION=
ARG REVISION=
ARG CREATED=
LABEL org.opencontainers.image.title="dubbo-nat-sidecar" \
      org.opencontainers.image.description="Rewrites Apache Dubbo provider registrations in ZooKeeper so that providers in Docker bridge networks are reachable from outside their host." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/dubbo-nat-sidecar/dubbo-nat-sidecar" \
      org.opencontainers.image.url="https://github.com/dubbo-nat-sidecar/dubbo-nat-sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
