# One image for both roles: `python -m backend` (default) or `python -m workers`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --upgrade pip \
 && /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
WORKDIR /app
COPY backend ./backend
COPY workers ./workers
COPY lua ./lua
COPY config ./config
# HOST=0.0.0.0: with the default dev login the image refuses to start, with one line saying why,
# until AUTH_PROVIDER (github, oidc) is configured, or ALLOW_DEV_LOGIN=true for a local demo.
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8000
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["python", "-m", "backend"]
