# recur on Debian 12: the same install script as the README and CI.
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src/recur
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN bash deploy/build.sh -DRECUR_BUILD_TESTS=OFF \
 && cmake --install build --prefix /usr/local \
 && rm -rf build
WORKDIR /work
ENTRYPOINT ["recur-train"]
CMD ["--help"]
