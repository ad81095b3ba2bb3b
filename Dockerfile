# Production image of dubbo-nat-sidecar: wheels built in one stage, installed in a slim one.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home sidecar
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels dubbo-nat-sidecar \
    && rm -rf /wheels
# Reading the Docker socket needs the socket's group: run with --group-add <its gid>.
USER sidecar
ENTRYPOINT ["dubbo-sidecar"]
CMD ["run"]
