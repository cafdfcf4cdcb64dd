# syntax=docker/dockerfile:1
# Life OS Realtime Gateway.
# Debian bookworm (glibc) base: the uWebSockets.js native binaries need glibc >= 2.27,
# so Alpine/musl would silently fall back to the slow pure-JS implementation (see docs/adr/0001).

############################
# Build stage: full install (dev deps), TypeScript emit to dist/, and the client SDK's
# browser bundle (dist-client/lifeos-client.js, esbuild) that the console serves
############################
FROM node:20-bookworm-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
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

COPY --from=build /app/dist ./dist
# The session console (CONSOLE_ENABLED=true): its static page, read from dist/inspector/assets
# (src/inspector/assets.ts), and the prebuilt SDK bundle it serves, so no esbuild at run time.
COPY --from=build /app/src/inspector/assets ./dist/inspector/assets
COPY --from=build /app/dist-client/lifeos-client.js ./dist-client/lifeos-client.js

USER node
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]

CMD ["node", "dist/main.js"]
