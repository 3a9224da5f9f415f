# ringshift-operator image: static musl binary on distroless, non-root.
# Build from the repository root: docker build -f deploy/images/operator.Dockerfile -t ringshift-operator:0.1.0 .
# (No container runtime exists on the project's build machines; this file is kept minimal and
# is not built by CI. The local harness maps the image name ringshift-operator:* to the binary.)
FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p ringshift-operator --bin ringshift-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/ringshift-operator /usr/local/bin/ringshift-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ringshift-operator"]
