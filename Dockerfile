# syntax=docker/dockerfile:1.7
#
# keygate container image: a static (musl) binary on distroless, running as non-root.
#
#   docker build -t keygate:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/keygate:TAG --push .
#
# NOTE: not built in CI here (the CI machine has no Docker engine). hack/kind-up.sh builds
# it for a local kind cluster.
#
# The image runs `keygate serve` by default. The manifests (manifests/in-cluster,
# manifests/sidecar) always pass --tls-cert/--tls-key, so nothing is written to disk and the
# root filesystem can stay read-only. Without them, keygate generates certificates under
# ./keygate-data, i.e. /home/nonroot/keygate-data (the working directory).

ARG RUST_IMAGE=rust:1-bookworm

# The builder runs on the target platform (under emulation in buildx for a foreign one), so
# the musl C compiler for ring is always the native one.
FROM ${RUST_IMAGE} AS builder
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# rust-toolchain.toml pins the compiler: install exactly that one (with the components it
# lists, so rustup has nothing left to fetch) and its musl target.
COPY rust-toolchain.toml ./
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac >/rust-target \
 && channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)" \
 && rustup toolchain install "$channel" --profile minimal \
      --component rustfmt,clippy --target "$(cat /rust-target)"
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
# ring is the only C code (rustls, rcgen, kube's TLS); musl-gcc compiles it. The result is
# fully static: no libc needed at run time.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    target="$(cat /rust-target)" \
 && env "CC_$(echo "$target" | tr - _)=musl-gcc" \
    cargo build --release --locked --bin keygate --target "$target" \
 && install -D -m 0755 "target/${target}/release/keygate" /out/keygate \
 && /out/keygate --version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/keygate /keygate
# distroless "nonroot" is uid/gid 65532; the manifests' runAsUser matches it.
USER nonroot:nonroot
WORKDIR /home/nonroot
# 8443: the TokenReview webhook (TLS). 9090: /healthz, /readyz, /metrics (plain HTTP).
EXPOSE 8443 9090
ENTRYPOINT ["/keygate"]
CMD ["serve"]
