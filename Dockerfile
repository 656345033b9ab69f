# syntax=docker/dockerfile:1.7
# Images of the four binaries, one stage each (pick with --target):
#   docker buildx build --platform linux/amd64,linux/arm64 --target otel-collector -t otel-collector .
# Multi-arch without emulation: the build stages run on the build machine's platform
# ($BUILDPLATFORM) and cross-compile with Rust's target and Debian's cross gcc for
# $TARGETPLATFORM: linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x,
# linux/riscv64. Dependencies are compiled in their own cached layer (cargo-chef), keyed by the
# lock file only. The runtime is distroless (glibc, CA certificates, no shell), non-root
# (65532), and runs with a read-only root filesystem; the HEALTHCHECK runs the binary itself
# (`--health-probe URL`). Not buildable on the development machines (no container engine);
# .github/workflows/images.yml builds and pushes them.

ARG RUST_VERSION=1.95.0
ARG DEBIAN=trixie

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN} AS chef
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TARGETPLATFORM
# Rust target, Debian architecture and cross-gcc prefix per platform, in one file for the
# later stages.
RUN case "$TARGETPLATFORM" in \
      linux/amd64)   echo "x86_64-unknown-linux-gnu amd64 x86_64-linux-gnu" ;; \
      linux/arm64)   echo "aarch64-unknown-linux-gnu arm64 aarch64-linux-gnu" ;; \
      linux/arm/v7)  echo "armv7-unknown-linux-gnueabihf armhf arm-linux-gnueabihf" ;; \
      linux/ppc64le) echo "powerpc64le-unknown-linux-gnu ppc64el powerpc64le-linux-gnu" ;; \
      linux/s390x)   echo "s390x-unknown-linux-gnu s390x s390x-linux-gnu" ;; \
      linux/riscv64) echo "riscv64gc-unknown-linux-gnu riscv64 riscv64-linux-gnu" ;; \
      *) echo "unsupported platform $TARGETPLATFORM" >&2; exit 1 ;; \
    esac > /etc/rust-target
# Debian's cross toolchain for the target (the native one when it is the build machine's
# architecture); cmake, clang and perl for the C parts (aws-lc, zstd, mimalloc).
# hadolint ignore=DL3008
RUN read -r target debarch _ < /etc/rust-target \
    && if [ "$debarch" = "$(dpkg --print-architecture)" ]; then tools=build-essential; else tools="crossbuild-essential-$debarch"; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends "$tools" cmake clang make perl pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$target" \
    && cargo install --locked cargo-chef@0.1.73
WORKDIR /src

FROM chef AS planner
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=planner /src/recipe.json recipe.json
# Linker and C compiler of the target (cc crate and rustc read these).
RUN read -r target _ gcc < /etc/rust-target \
    && upper=$(echo "$target" | tr 'a-z-' 'A-Z_') \
    && { echo "export CARGO_TARGET_${upper}_LINKER=${gcc}-gcc"; \
         echo "export CC_$(echo "$target" | tr '-' '_')=${gcc}-gcc"; \
         echo "export AR_$(echo "$target" | tr '-' '_')=${gcc}-ar"; } > /etc/rust-env
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    . /etc/rust-env && read -r target _ < /etc/rust-target \
    && cargo chef cook --release --target "$target" --recipe-path recipe.json \
       -p otel-collector -p node-agent -p demo-app -p anomaly-detector
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    . /etc/rust-env && read -r target _ < /etc/rust-target \
    && cargo build --release --locked --target "$target" \
       --bin otel-collector --bin node-agent --bin demo-app --bin loadgen --bin anomaly-detector \
    && mkdir -p /out && cp "target/$target/release/"{otel-collector,node-agent,demo-app,loadgen,anomaly-detector} /out/

FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
LABEL org.opencontainers.image.source="https://github.com/otel-pipeline/otel-pipeline" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532

FROM runtime AS otel-collector
COPY --from=builder /out/otel-collector /usr/local/bin/otel-collector
COPY otel-collector/config/otel-collector.yaml /etc/otelcol/otel-collector.yaml
ENV OTELCOL_BIND=0.0.0.0
EXPOSE 4317 4318 8888 8889 13133
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s CMD ["/usr/local/bin/otel-collector", "--health-probe", "http://127.0.0.1:13133/"]
ENTRYPOINT ["/usr/local/bin/otel-collector"]
CMD ["--config", "/etc/otelcol/otel-collector.yaml"]

FROM runtime AS node-agent
COPY --from=builder /out/node-agent /usr/local/bin/node-agent
EXPOSE 13134
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s CMD ["/usr/local/bin/node-agent", "--health-probe", "http://127.0.0.1:13134/health"]
ENTRYPOINT ["/usr/local/bin/node-agent"]
CMD ["--health-addr", "0.0.0.0:13134"]

FROM runtime AS demo-app
COPY --from=builder /out/demo-app /out/loadgen /usr/local/bin/
ENV DEMO_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s CMD ["/usr/local/bin/demo-app", "--health-probe", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/demo-app"]

FROM runtime AS anomaly-detector
COPY --from=builder /out/anomaly-detector /usr/local/bin/anomaly-detector
COPY anomaly-detector/config/detector.yaml /etc/anomaly-detector/detector.yaml
ENV DETECTOR_ADDR=0.0.0.0:9464
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=6s --start-period=20s CMD ["/usr/local/bin/anomaly-detector", "--health-probe", "http://127.0.0.1:9464/health"]
ENTRYPOINT ["/usr/local/bin/anomaly-detector"]
CMD ["--config", "/etc/anomaly-detector/detector.yaml"]
