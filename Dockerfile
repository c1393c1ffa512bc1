# syntax=docker/dockerfile:1
# --- build: compile the Cython hot path into a wheel ---------------------------------------------
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY omen ./omen
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: no compiler, non-root ---------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /srv/omen --create-home omen \
 && python -c "import omen._fast.sse, omen._fast.bpe"
USER omen
WORKDIR /srv/omen
# 8080/tcp: HTTP/1.1 + h2c (and TLS h2 with --certfile/--keyfile); 8080/udp: HTTP/3 when TLS is on.
EXPOSE 8080/tcp 8080/udp
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status == 200 else 1)"]
# Binding 0.0.0.0 requires a master key: docker run -e OMEN_MASTER_KEY=... (see README).
ENTRYPOINT ["omen"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
