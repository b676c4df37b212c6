# corral's image: the head (`corral start --foreground`, the default command)
# or a worker (`--join tcp://HEAD:6390`), as PID 1 with signals handled and
# logs on standard error. BASE is any image with python3 and pip (CI passes a
# locally made one: no registry is reachable there).
ARG BASE=python:3.11-slim
FROM ${BASE}
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/corral
COPY setup.cfg pyproject.toml README.md ./
COPY protocol ./protocol
COPY transport ./transport
COPY actors ./actors
COPY scripts ./scripts
RUN ["python3", "-m", "pip", "install", ".[arrays,models,fastapi,redis]"]
EXPOSE 6390 8000 8265 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["corral", "health", "--address", "tcp://127.0.0.1:6390", "--keys", "/run/secrets/corral"]
ENTRYPOINT ["corral", "start", "--foreground"]
CMD ["--host", "0.0.0.0", "--keys", "/run/secrets/corral"]
