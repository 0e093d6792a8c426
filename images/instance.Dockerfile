# The instance image: PostgreSQL 15 from Debian 12 plus the petrel binary (`petrel instance`
# runs as PID 1 and supervises postgres, dropping privileges to the postgres user).
# Build from the repository root:
#   docker build -f images/instance.Dockerfile -t ghcr.io/petrel-dev/postgres:15.4 .
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
      postgresql-15 postgresql-contrib-15 libboost-system1.81.0 libssl3 libyaml-cpp0.7 \
      libspdlog1.10 libfmt9 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Debian's packaging creates a cluster in /var/lib/postgresql/15/main; petrel uses PGDATA only.
RUN pg_dropcluster 15 main
COPY --from=build /build/cli/petrel /usr/local/bin/petrel
# The data volume is mounted here; PGDATA lives one level down so that lost+found on the
# volume root does not upset initdb.
VOLUME /var/lib/postgresql/data
EXPOSE 5432 8000 9187
ENTRYPOINT ["petrel", "instance"]
