# syntax=docker/dockerfile:1
# entra-operator image: build with the Rust toolchain on Debian bookworm, run on distroless (glibc, no
# shell, no package manager) as UID 65532. Build: docker build -t entra-operator .

ARG RUST_VERSION=1.95

# Base images: pin them by digest for a release with scripts/pin-base-images.sh, which rewrites each
# FROM below to `image:tag@sha256:<digest>` with the digest the registry serves for the tag (the
# multi-arch index). They are not pinned in this tree: it was written without registry access, and
# a digest that was not read from the registry would be made up. The test in
# conformance/helm/test_dockerfile.py accepts both forms.

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when a manifest or the lockfile changes. The image is
# built with --no-default-features, without the `sandbox` feature, so it links no emulator (and no
# emulator test key). The emulators are still workspace members and dev-dependencies, so cargo needs
# their manifests (and only those: their targets are never built) for the workspace and Cargo.lock
# to resolve; their sources are not copied.
COPY Cargo.toml Cargo.lock ./
COPY emulators/entra/Cargo.toml emulators/entra/Cargo.toml
COPY emulators/kube/Cargo.toml emulators/kube/Cargo.toml
RUN cargo fetch --locked

# Sources. target/ is a BuildKit cache mount so unchanged dependencies are not recompiled; the binary is
# copied out of it in the same step because the mount is not part of the image. `--profile image`
# (Cargo.toml) is the release build linked whole (LTO): fewer pages of code, less resident memory.
# bench/scale.sh measures this same build.
COPY crds crds
COPY src src
RUN --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile image --locked --offline --no-default-features \
        --package entra-operator --bin entra-operator \
    && install -D -m 0755 target/image/entra-operator /out/entra-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="entra-operator" \
      org.opencontainers.image.description="Kubernetes operator for Microsoft Entra ID app registrations, credentials and consent" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/entra-operator /entra-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/entra-operator"]
CMD ["run"]
