# syntax=docker/dockerfile:1
# The factorio-isr image: one static (musl) binary on an empty base, run as a non-root user.
#
#   docker build -t factorio-isr:0.1.0 .
#
# Without a registry or an engine, config/image/build.sh makes the same image from a binary
# built here (docs/deployment.md, "Building the image").

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# musl-gcc builds the C parts (mimalloc) for the musl target; protoc the etcd client of
# cluster mode.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 protobuf-compiler=3.21.12-3 \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl wasm32-wasip2
WORKDIR /src
COPY . .
# Stripped: the line tables the release profile keeps are ~150 MB of a 190 MB binary.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p factorio-isr --features cluster \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/factorio-isr /out/factorio-isr \
    && mkdir -p /out/empty /out/tmp \
    && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="factorio-isr" \
      org.opencontainers.image.description="Watches Factorio servers and reports to Discord; its rules are sandboxed WebAssembly plugins." \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/factorio-isr/factorio-isr"
COPY config/image/rootfs/ /
COPY patterns/ /patterns/
COPY --from=build /out/factorio-isr /factorio-isr
# Mount points: /config (servers.yml, mentions.yml), /patterns (pattern files; the stock ones
# are there until a folder is mounted over them), /plugins (.wasm files), /state (checkpoints,
# pins, the plugin cache: keep it on a volume).
COPY --from=build /out/empty /config
COPY --from=build /out/empty /plugins
COPY --from=build /out/tmp /tmp
COPY --from=build --chown=10001:10001 /out/empty /state
ENV FACTORIO_ISR_CONFIG=/config/servers.yml \
    FACTORIO_ISR_STATE_DIR=/state \
    FACTORIO_ISR_CACHE_DIR=/state/plugin-cache \
    HEALTH_CHECK_HOST=0.0.0.0 \
    HEALTH_CHECK_PORT=8080
USER 10001:10001
WORKDIR /
VOLUME ["/state"]
EXPOSE 8080/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/factorio-isr", "healthcheck"]
ENTRYPOINT ["/factorio-isr"]
CMD ["run"]
