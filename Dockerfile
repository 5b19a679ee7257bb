# scaler: autoscaling and disaster-recovery controller.
#   docker build -t scaler:0.1.0 .
#   docker run -v /path/to/config:/etc/scaler scaler:0.1.0 run /etc/scaler/scaler.yaml
# (the run config and its policies: docs/live-loop.md; the image and manifests: docs/deployment.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/scaler
COPY pyproject.toml README.md ./
COPY scaler ./scaler
RUN pip install --no-cache-dir ".[kubernetes]" && useradd --create-home --uid 10001 scaler \
    && mkdir -p /var/lib/scaler && chown scaler /var/lib/scaler
# Compile the decision path into numba's cache now: the controller then starts in about a second instead
# of compiling for half a minute. Under a read-only root filesystem the cache is copied to /tmp at start
# (scaler/decision/kernel/cache.py); on a CPU unlike the build machine's, numba compiles once more. Run from
# / so that the installed package is compiled (numba files its cache under the source's directory), not
# ./scaler.
ENV NUMBA_CACHE_DIR=/opt/scaler/jit-cache
RUN cd / && python -c "from scaler.decision import decide; from scaler.simulate import replay; decide.warm(); replay.warm()" \
    && chown -R scaler /opt/scaler/jit-cache
COPY policies ./policies
COPY runbooks ./runbooks

USER scaler
WORKDIR /var/lib/scaler
EXPOSE 9464
# /healthz answers while the process is alive; the port is the config's `listen` (9464 by default).
ENV SCALER_HEALTH_URL=http://127.0.0.1:9464/healthz
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SCALER_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["scaler"]
CMD ["run", "/etc/scaler/scaler.yaml"]
