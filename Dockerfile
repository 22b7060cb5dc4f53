FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fieldrelay ./fieldrelay
COPY receiver ./receiver
COPY workers ./workers
COPY rules ./rules
COPY sandbox ./sandbox
RUN pip install . && useradd --system --home /app fieldrelay && mkdir -p /app/var && chown fieldrelay /app/var
USER fieldrelay
EXPOSE 8000
CMD ["fieldrelay", "receiver", "--host", "0.0.0.0", "--port", "8000"]
