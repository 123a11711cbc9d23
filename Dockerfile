# syntax=docker/dockerfile:1
# entra-operator image: build with the Rust toolchain on Debian bookworm, run on distroless (glibc, no
# shell, no package manager) as UID 65532. Build: docker build -t entra-operator .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when a manifest or the lockfile changes. The emulators
# are workspace members, so their manifests are needed for the workspace (and Cargo.lock) to resolve.
COPY Cargo.toml Cargo.lock ./
COPY emulators/entra/Cargo.toml emulators/entra/Cargo.toml
COPY emulators/kube/Cargo.toml emulators/kube/Cargo.toml
RUN cargo fetch --locked

# Sources. target/ is a BuildKit cache mount so unchanged dependencies are not recompiled; the binary is
# copied out of it in the same step because the mount is not part of the image.
COPY crds crds
COPY emulators emulators
COPY src src
# Cargo.toml names the operator benchmark; cargo refuses a manifest whose targets are missing.
COPY benches benches
RUN --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --offline --package entra-operator --bin entra-operator \
    && install -D -m 0755 target/release/entra-operator /out/entra-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="entra-operator" \
      org.opencontainers.image.description="Kubernetes operator for Microsoft Entra ID app registrations, credentials and consent" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/entra-operator /entra-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/entra-operator"]
CMD ["run"]
