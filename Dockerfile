# tern in a container: a static binary on a distroless base, as an unprivileged user, with its
# state in a volume. Build: docker build -t tern .   Run: docker run -p 1883:1883 -p 8080:8080 -v tern-data:/data tern
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/tern ./cmd/tern

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tern /usr/bin/tern
# distroless's nonroot user (65532) owns the state.
USER nonroot:nonroot
VOLUME /data
WORKDIR /data
EXPOSE 1883 8080
# In a container the listeners must face the network; loopback would be unreachable. With no
# user, grant or token configured, tern refuses to listen beyond loopback unless auth.allow_open
# is set: add a user first (docker run ... tern user add NAME --data-dir /data), or set
# TERN_AUTH__ALLOW_OPEN=true knowingly.
ENV TERN_DATA_DIR=/data \
    TERN_LISTEN__MQTT=0.0.0.0:1883 \
    TERN_LISTEN__HTTP=0.0.0.0:8080 \
    TERN_LISTEN__UNIX=
ENTRYPOINT ["/usr/bin/tern"]
CMD ["serve"]
