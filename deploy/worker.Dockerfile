# impq-worker on an NVIDIA CUDA base. Ubuntu 24.04 rather than 22.04: its gRPC 1.51,
# protobuf 3.21 and Abseil 20220623 packages are the versions the project is built and tested
# with on Debian 12 (22.04 has gRPC 1.30 / protobuf 3.12). The CUDA plugin is built against the
# image's toolkit and dlopen()ed by the worker at run time (TOOLCHAIN.md pitfall 3); without a
# GPU the worker runs on the CPU engine. libimpq_sentencepiece.so (SentencePiece, isolated from
# the worker's protobuf; worker/model/sentencepiece_shim.h) is found in /usr/local/lib/impq.
# Not built in CI (no Docker daemon, no network there):
#   docker build -f deploy/worker.Dockerfile -t impq-worker:dev .
ARG CUDA_VERSION=12.6.3
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build
WORKDIR /src
COPY . /src
RUN apt-get update -qq \
 && scripts/install_deps.sh \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;86;89;90" \
 && ninja -C build impq-worker \
 && mkdir -p /out/bin /out/deps /out/lib \
 && cp build/worker/service/impq-worker /out/bin/ \
 && (find build -name '*.so' -path '*cuda*' -exec cp {} /out/lib/ \; || true) \
 && cp build/worker/model/libimpq_sentencepiece.so /out/lib/ \
 && ldd /out/bin/impq-worker /out/lib/*.so | awk '/=> \//{print $3}' | grep -v -e libcuda -e libnvidia \
    | sort -u | xargs -I{} cp --parents -L {} /out/deps/

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04
COPY --from=build /out/deps/ /
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/lib/ /usr/local/lib/impq/
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN useradd --system --uid 10001 --user-group impq
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/impq-worker"]
# Secure by default: the workers' token file and /data must be provided, or it refuses to start.
CMD ["--coordinator=impq-coordinator:50051", "--token_file=/etc/impq/worker_token", "--data_root=/data"]
