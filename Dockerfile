FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# The sources are built into a wheel and installed; the processes run from /app, which holds only
# their data, so nothing there can shadow an installed package.
COPY pyproject.toml README.md /src/
COPY fieldrelay /src/fieldrelay
COPY fieldrelay_cli /src/fieldrelay_cli
COPY receiver /src/receiver
COPY workers /src/workers
COPY rules /src/rules
COPY sandbox /src/sandbox
RUN pip install /src && rm -rf /src \
    && useradd --system --home /app fieldrelay && mkdir -p /app/var && chown -R fieldrelay /app
WORKDIR /app
USER fieldrelay
EXPOSE 8000
CMD ["fieldrelay", "receiver", "--host", "0.0.0.0", "--port", "8000"]
