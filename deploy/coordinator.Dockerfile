# impq-coordinator (+ impqctl): built on Debian 12 with the project's scripts, shipped on
# debian:12-slim with exactly the shared libraries the binaries load (collected with ldd).
#   docker build -f deploy/coordinator.Dockerfile -t impq-coordinator:dev .
FROM debian:12 AS build
WORKDIR /src
COPY . /src
RUN apt-get update -qq \
 && scripts/install_deps.sh \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && ninja -C build impq-coordinator impqctl \
 && mkdir -p /out/bin /out/deps \
 && cp build/coordinator/impq-coordinator build/cli/impqctl/impqctl /out/bin/ \
 && for b in /out/bin/*; do ldd "$b" | awk '/=> \//{print $3}'; done | sort -u \
    | xargs -I{} cp --parents -L {} /out/deps/

FROM debian:12-slim
COPY --from=build /out/deps/ /
COPY --from=build /out/bin/ /usr/local/bin/
RUN useradd --system --uid 10001 --user-group impq && mkdir -p /var/lib/impq \
 && chown impq:impq /var/lib/impq
USER 10001:10001
VOLUME /var/lib/impq
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/impq-coordinator"]
# Secure by default: the token files (a mounted Secret; see deploy/k8s/secret.example.yaml)
# and /data must be provided, or the coordinator refuses to start.
CMD ["--listen=0.0.0.0:50051", "--metrics_listen=0.0.0.0:9464", "--store=/var/lib/impq/impq.db", \
     "--data_root=/data", "--token_file=/etc/impq/token", \
     "--worker_token_file=/etc/impq/worker_token", "--health_listen=127.0.0.1:8081"]
