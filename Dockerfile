# syntax=docker/dockerfile:1
#
# The stepup container image.
#
#   docker build -t stepup:0.1.0 .
#   docker run --rm -p 7171:7171 -p 7172:7172 stepup:0.1.0
#       # serves the example policies: gRPC (Decide, ext_authz Check, health)
#       # on 7171; admin HTTP on 7172 (curl localhost:7172/metrics)
#   docker run --rm -p 7171:7171 -v "$PWD/policies:/etc/stepup/policies:ro" stepup:0.1.0
#       # your policies; edits reload live
#   docker run --rm -p 7171:7171 stepup:0.1.0 serve --policies /etc/stepup/policies \
#       --listen 0.0.0.0:7171 --admin off --decision-log stdout
#       # arguments replace CMD (the Helm chart passes its own)
#
# Build stage: the same command CI and developers run, `cargo build --release
# --locked`, with the toolchain CI uses (RUST_VERSION). No protoc or other
# system packages are needed: build.rs compiles the protos with protox.
#
# Runtime stage: gcr.io/distroless/cc-debian12:nonroot (glibc, libgcc, CA
# certificates, tzdata; no shell, no package manager; user 65532). Chosen over a
# static musl binary on scratch because musl's allocator costs latency under
# multi-threaded load, and the decision path is latency-bound; and because the
# image then ships the same glibc build of the binary that CI tests. Both stages
# are Debian 12 (bookworm), so the glibc the binary links against is the one it
# runs on. Nothing in the image needs to be writable: run it with a read-only
# root filesystem (a `--decision-log FILE` needs a writable volume for FILE).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the cargo registry and target dir between builds; the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
    && install -D -m 0755 target/release/stepup /out/stepup

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="stepup" \
      org.opencontainers.image.description="Policy decision point for step-up authentication (gRPC, Envoy ext_authz)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/stepup /usr/local/bin/stepup
# The example policies, so the image runs out of the box. The Helm chart mounts
# the policy ConfigMap over this directory.
COPY policies/ /etc/stepup/policies/
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# gRPC: stepup.v1.DecisionService, envoy.service.auth.v3.Authorization
# (ext_authz), grpc.health.v1.Health, reflection.
EXPOSE 7171
# Admin HTTP: /livez, /readyz, /metrics (Prometheus), /policy. stepup's own
# default is loopback; in a container only published ports are reachable, so
# the image binds it on all interfaces like the gRPC port.
EXPOSE 7172
ENTRYPOINT ["stepup"]
CMD ["serve", "--policies", "/etc/stepup/policies", "--listen", "0.0.0.0:7171", "--admin", "0.0.0.0:7172"]
