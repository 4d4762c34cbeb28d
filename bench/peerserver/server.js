// Starts PeerServer (npm "peer", pinned in package.json) for bench/run.
// Usage: node server.js PORT [HOST]
// Limits that would distort a benchmark are lifted: the concurrent-user cap
// (default 5000) and the 90 s liveness timeout (clients of the benchmark send
// no HEARTBEAT). Nothing else differs from a default PeerServer.
"use strict";
const { PeerServer } = require("peer");

const port = Number(process.argv[2] || 9000);
const host = process.argv[3] || "127.0.0.1";

const server = PeerServer({
  port,
  host,
  path: "/",
  key: "peerjs",
  concurrent_limit: 1000000,
  alive_timeout: 3600 * 1000,
  expire_timeout: 5000,
  allow_discovery: false,
}, () => {
  process.stdout.write(`PeerServer listening on ${host}:${port}\n`);
});

server.on("error", (err) => process.stderr.write(`peerserver error: ${err}\n`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
