# The production image. The wheels come from the host (scripts/build-image runs `pip wheel`),
# so the build needs no Python package index and no build tools end up in the image.
FROM python:3.11-slim AS build
COPY build/wheels /wheels
RUN python3 -m venv /opt/dubbo-sidecar \
    && /opt/dubbo-sidecar/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        dubbo-nat-sidecar

FROM python:3.11-slim
# iptables for proxy mode's transparent capture (--proxy-capture), the one package fetched
# from the base's Debian mirror. Not pinned: it follows the base's Debian release and its
# security updates. Before the sidecar's own files, so that this layer stays cached.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
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
