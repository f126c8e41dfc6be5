# syntax=docker/dockerfile:1
# lb-operator's container image: `make image`.
#
# Two stages: the first builds a wheel of the package (and of nothing else);
# the second installs it into a clean slim Python with no build tools, and
# runs it as an unprivileged user with a read-only root file system in mind
# (nothing is written outside /tmp, which the chart mounts as an emptyDir).

# The base is pinned by tag here; pin it by digest too where the registry is
# reachable (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`).
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="lb-operator" \
      org.opencontainers.image.description="Cloud load balancers as Kubernetes objects, serialized per load balancer" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels/ /tmp/wheels/
# The wheel's dependencies come from PyPI at their released versions; the
# operator's own code only from the wheel built above.
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && groupadd --gid 65532 lb-operator \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin lb-operator
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["lb-operator"]
CMD ["run"]
