# The production image. The wheels come from the host (scripts/build-image runs `pip wheel`),
# so the build needs no package index and no build tools end up in the image.
FROM python:3.11-slim AS build
COPY build/wheels /wheels
RUN python3 -m venv /opt/dubbo-sidecar \
    && /opt/dubbo-sidecar/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        dubbo-nat-sidecar

FROM python:3.11-slim
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
