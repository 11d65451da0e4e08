# chain-gateway container image, built with the same install and build scripts as the README and
# CI (the build stage installs what building needs, not the tests' tools).
# (Not built in this repository's CI: its machines have no Docker engine. tests/deploy/
# check_image.py checks this file against the scripts, the binary's libraries and the default
# configuration instead.)
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/install-deps.sh --build \
    && BUILD_DIR=/src/build CMAKE_ARGS="-DGATEWAY_BUILD_TESTS=OFF" scripts/build.sh chain-gateway

FROM debian:12-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="chain-gateway" \
      org.opencontainers.image.description="JSON-RPC gateway for EVM chains: node pool with failover, cache, and a durable write path" \
      org.opencontainers.image.version="${VERSION}"
# The binary's shared libraries (tests/deploy/check_image.py holds this list to `ldd`), and a
# numeric user, so that Kubernetes can verify runAsNonRoot.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libboost-json1.81.0 libboost-url1.81.0 \
       libssl3 libyaml-cpp0.7 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libsqlite3-0 libpq5 libsecp256k1-1 libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chain-gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/chain-gateway --create-home chain-gateway
COPY --from=build /src/build/src/chain-gateway /usr/local/bin/chain-gateway
# The default configuration: one chain from UPSTREAM_URL, the admin token from GATEWAY_ADMIN_TOKEN.
# Another file: mount it and set GATEWAY_CONFIG, which the command and the HEALTHCHECK both read.
COPY config/container.yaml /etc/chain-gateway/gateway.yaml
ENV GATEWAY_CONFIG=/etc/chain-gateway/gateway.yaml
USER 10001:10001
WORKDIR /var/lib/chain-gateway
# The journal (SQLite): keep it on a volume, or a restarted container forgets what it accepted.
VOLUME /var/lib/chain-gateway
EXPOSE 8545 9545
# The image has no curl: the binary asks its own admin listener (exit 0 on a 2xx /healthz).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/chain-gateway", "--probe"]
ENTRYPOINT ["/usr/local/bin/chain-gateway"]
