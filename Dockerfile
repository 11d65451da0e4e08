# chain-gateway container image: built with the same install script as the README and CI.
# (Not built in this repository's CI: its machines have no Docker engine.)
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/install-deps.sh && BUILD_DIR=/src/build scripts/build.sh chain-gateway

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libboost-json1.81.0 libboost-url1.81.0 \
       libssl3 libyaml-cpp0.7 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libsqlite3-0 libsecp256k1-1 libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/chain-gateway --create-home chain-gateway
COPY --from=build /src/build/src/chain-gateway /usr/local/bin/chain-gateway
USER chain-gateway
WORKDIR /var/lib/chain-gateway
EXPOSE 8545 9545
ENTRYPOINT ["/usr/local/bin/chain-gateway"]
CMD ["--config", "/etc/chain-gateway/gateway.yaml"]
