# One image for both roles: `python -m backend` (default) or `python -m workers` (also
# `ai-backend-api`, `ai-backend-worker`, `ai-backend-admin`).
# The base image is pinned by the digest of its multi-architecture index. To move it (a new
# Python patch release, Debian fixes): `docker buildx imagetools inspect python:3.11-slim-bookworm`
# and put the tag and the index digest it prints here, in the same change as a `make lock`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The runtime lock only (no dev extra), every file hash-checked; this layer is rebuilt only when
# the lock changes. The venv's pip is the base image's, pinned by its digest.
COPY requirements.txt ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --require-hashes -r requirements.txt
# Then the project as a wheel, built with the locked setuptools and nothing downloaded: its code,
# lua/ (as backend/store/lua) and the prompts land in the venv's site-packages.
COPY pyproject.toml ./
COPY backend ./backend
COPY workers ./workers
COPY config ./config
COPY lua ./lua
RUN /venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation --no-index .

FROM ${PYTHON_IMAGE}
# A fixed numeric user and group: Kubernetes' runAsNonRoot can check a number, not a name.
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /venv /venv
# Nothing of the source tree: the code is the installed wheel. The working directory is where a
# `.env` would be read from; it stays empty and read-only.
WORKDIR /app
# HOST=0.0.0.0: with the default dev login the image refuses to start, with one line saying why,
# until AUTH_PROVIDER (github, oidc) is configured, or ALLOW_DEV_LOGIN=true for a local demo.
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["python", "-m", "backend"]
