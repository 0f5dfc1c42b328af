# recur on Debian 12, in two stages: a build stage with the toolchain (deploy/install-deps.sh and
# deploy/build.sh, the scripts the README and CI run), and a runtime stage with only the shared
# libraries the binaries link (deploy/runtime-packages.sh) and the binaries, run as a non-root user.
#   docker build -t recur .
#   docker run -p 50051:50051 -p 9464:9464 -v $PWD/runs/demo:/model:ro recur
#   docker run --entrypoint recur-train recur --help
# Debian's LibTorch runs on the CPU only: deploy/README.md says how a GPU image differs.

FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src/recur
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN bash deploy/build.sh -DRECUR_BUILD_TESTS=OFF \
 && cmake --install build --prefix /opt/recur \
 && bash deploy/runtime-packages.sh /opt/recur/bin/* > /opt/recur/runtime-packages.txt \
 && rm -rf build

FROM debian:bookworm-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/recur/runtime-packages.txt /tmp/runtime-packages.txt
# OpenBLAS is loaded through the BLAS alternative, not linked by name: without it LibTorch runs on
# the reference BLAS, about 30x slower.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread \
      $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin recur \
 && mkdir -p /sessions \
 && chown recur:recur /sessions
COPY --from=build /opt/recur/bin/ /usr/local/bin/
USER 10001:10001
WORKDIR /sessions
# OpenBLAS's idle threads spin 2^28 cycles after each product by default, holding the core that
# the server's sampling helper and gRPC threads need between products; 2^4 lets them sleep
# (docs/performance.md, "Sampling on two cores"). Measured for serving, not for training.
ENV OPENBLAS_THREAD_TIMEOUT=4
EXPOSE 50051 9464
# Twelve failures in a row (two minutes) make it unhealthy, which covers loading a large model.
# (No --start-period: dockerfilelint 1.8 rejects it, its option pattern stopping at the hyphen.)
HEALTHCHECK --interval=10s --timeout=5s --retries=12 \
  CMD ["recur", "health", "--server", "127.0.0.1:50051", "--timeout", "4s"]
ENTRYPOINT ["recur-server"]
CMD ["--checkpoint", "/model", "--host", "0.0.0.0", "--session_dir", "/sessions"]
