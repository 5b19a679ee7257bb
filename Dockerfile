# scaler: autoscaling and disaster-recovery controller.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/scaler
COPY pyproject.toml README.md ./
COPY scaler ./scaler
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 scaler
COPY policies ./policies
COPY runbooks ./runbooks

USER scaler
WORKDIR /home/scaler
ENV SCALER_STATE_DIR=/home/scaler/state
ENTRYPOINT ["scaler"]
CMD ["--help"]
