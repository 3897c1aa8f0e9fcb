# The firecrest-ci GitHub Action: a small image that does one thing, run ci_runner.
# Build stage: a virtual environment from hash-pinned requirements (made by `make lock`).
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY ci_runner ci_runner
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/pip uninstall --yes pip

# Final stage: the same slim base, the venv and two entrypoint scripts; no build tools.
# It runs as root, as GitHub expects of Docker actions: the workspace is
# mounted owned by the runner's user, and the post step must read $GITHUB_STATE.
FROM python:3.11.14-slim-bookworm
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/ci-runner-entrypoint
COPY docker/post-entrypoint.sh /usr/local/bin/ci-runner-post-entrypoint
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# exec form: the script execs Python as PID 1, so cancel signals reach the runner.
ENTRYPOINT ["/usr/local/bin/ci-runner-entrypoint"]
