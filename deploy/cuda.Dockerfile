# recur with CUDA: the same two stages as the top-level Dockerfile, but LibTorch comes from
# PyTorch's CUDA wheel (Debian's libtorch is CPU-only), as on the project's GPU hosts
# (docs: deploy/README.md, "GPU image"). The host needs the NVIDIA driver and container toolkit.
#   docker build -f deploy/cuda.Dockerfile -t recur:cuda .
#   docker run --gpus all -p 50051:50051 -v $PWD/runs/demo:/model:ro recur:cuda
# Not built here: this project's machines have no Docker engine, and the lint is all CI checks.
# The wheel must use the new C++ ABI (PyTorch 2.7 and later), as Debian's gRPC and Abseil do.
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126

FROM debian:bookworm AS build
ARG TORCH_VERSION
ARG TORCH_INDEX
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src/recur
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/torch \
 && /opt/torch/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY . .
RUN prefix=$(/opt/torch/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)') \
 && bash deploy/build.sh -DRECUR_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="${prefix}" \
 && cmake --install build --prefix /opt/recur \
 && rm -rf build

FROM debian:bookworm-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# The libraries of the top-level image but LibTorch, which comes with the wheel, with the CUDA
# libraries the wheel bundles (site-packages/nvidia/*/lib).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libabsl20220623 libcpp-httplib0.11 \
      libgoogle-glog0v6 libgrpc++1.51 libgrpc29 libprometheus-cpp-core1.0 libprotobuf32 \
      libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin recur \
 && mkdir -p /sessions \
 && chown recur:recur /sessions
COPY --from=build /opt/torch/lib/python3.11/site-packages/torch/lib/ /opt/torch/lib/
COPY --from=build /opt/torch/lib/python3.11/site-packages/nvidia/ /opt/nvidia/
COPY --from=build /opt/recur/bin/ /usr/local/bin/
RUN find /opt/nvidia -name lib -type d > /etc/ld.so.conf.d/nvidia.conf \
 && echo /opt/torch/lib > /etc/ld.so.conf.d/torch.conf \
 && ldconfig
USER 10001:10001
WORKDIR /sessions
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --retries=12 \
  CMD ["recur", "health", "--server", "127.0.0.1:50051", "--timeout", "4s"]
ENTRYPOINT ["recur-server"]
CMD ["--checkpoint", "/model", "--host", "0.0.0.0", "--session_dir", "/sessions", "--device", "cuda"]
