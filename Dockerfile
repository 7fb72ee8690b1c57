# kiln's coordinator and agent image: `docker run kiln coordinator …` or `docker run kiln agent run …`.
FROM node:20-bookworm-slim AS build
WORKDIR /kiln
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY gen gen
COPY sdk/typescript/src sdk/typescript/src
COPY bench bench
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# Nix for the agent's `nix` builder; the coordinator does not need it.
RUN apt-get update && apt-get install -y --no-install-recommends nix-bin ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /kiln
COPY --from=build /kiln/node_modules node_modules
COPY --from=build /kiln/dist dist
COPY package.json ./
COPY migrations migrations
COPY dashboard dashboard
ENV KILN_DATA_DIR=/var/lib/kiln
VOLUME /var/lib/kiln
EXPOSE 8745
ENTRYPOINT ["node", "/kiln/dist/src/cli/main.js"]
CMD ["coordinator", "--listen", "0.0.0.0:8745"]
