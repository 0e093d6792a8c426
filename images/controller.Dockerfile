# The controller image: only the petrel binary on a slim Debian 12, run as a non-root user.
# Build from the repository root:
#   docker build -f images/controller.Dockerfile -t ghcr.io/petrel-dev/petrel:0.1.0 .
FROM debian:12-slim AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libboost1.81-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libpq-dev \
      libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && cmake --build /build --target petrel

FROM debian:12-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libssl3 libyaml-cpp0.7 libspdlog1.10 libfmt9 libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/cli/petrel /usr/local/bin/petrel
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["petrel", "controller"]
