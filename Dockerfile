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
# The image holds every binary; the default runs the server on a mounted checkpoint:
#   docker run -p 50051:50051 -p 9090:9090 -v $PWD/runs/demo:/model recur
# and `docker run --entrypoint recur-train recur --help` trains.
# OpenBLAS's idle threads spin 2^28 cycles after each product by default, holding the core that
# the server's sampling helper and gRPC threads need between products; 2^4 lets them sleep
# (docs/performance.md, "Sampling on two cores"). Measured for serving, not for training.
ENV OPENBLAS_THREAD_TIMEOUT=4
EXPOSE 50051 9090
ENTRYPOINT ["recur-server"]
CMD ["--checkpoint", "/model", "--host", "0.0.0.0"]
