# syntax=docker/dockerfile:1
# Life OS Realtime Gateway.
# Debian bookworm (glibc) base: the uWebSockets.js native binaries need glibc >= 2.27,
# so Alpine/musl would silently fall back to the slow pure-JS implementation (see docs/adr/0001).

############################
# Build stage: full install (dev deps), the gateway bundled to dist/ with the console's page
# (scripts/build-gateway.ts, esbuild; docs/adr/0005), and the client SDK's browser bundle
# (dist-client/lifeos-client.js) that the console serves
############################
FROM node:20-bookworm-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json ./
COPY scripts/build-gateway.ts ./scripts/
COPY src ./src
COPY client ./client
RUN npm run build && npm run build:client

############################
# Runtime stage: production deps only, non-root
############################
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force \
    && node -e "const u=require('uWebSockets.js'); if(!String(u.App).includes('[native code]')){console.error('uWebSockets.js native build not loaded');process.exit(1)}"

# The bundle, with the console's page in dist/inspector/assets (CONSOLE_ENABLED=true), and
# the prebuilt SDK bundle the console serves, so no esbuild at run time. node_modules is
# still installed: uWebSockets.js's native binary stays outside the bundle.
COPY --from=build /app/dist ./dist
COPY --from=build /app/dist-client/lifeos-client.js ./dist-client/lifeos-client.js

USER node
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]

CMD ["node", "dist/main.js"]
