// Node.js TLS probe client for the tlsprobe lab: one connection, report success or failure.
//
//   node node_tls_probe.js HOST PORT SERVERNAME CA_FILE [TIMEOUT_MS]
//
// Connects with tls.connect, sends a GET after the handshake and prints one JSON line
// with the local address/port (recorded on TCP connect, so it is known even when the
// handshake is reset), the negotiated version or the error code. Exit 0 on success.
'use strict';

const fs = require('node:fs');
const tls = require('node:tls');

const [host, port, servername, caPath, timeoutArg] = process.argv.slice(2);
if (!host || !port || !servername || !caPath) {
  console.error('usage: node node_tls_probe.js HOST PORT SERVERNAME CA [TIMEOUT_MS]');
  process.exit(2);
}

const report = { ok: false, local_ip: null, local_port: null, version: null, error: null };
let done = false;

function finish(ok, error) {
  if (done) return;
  done = true;
  report.ok = ok;
  report.error = error;
  console.log(JSON.stringify(report));
  process.exit(ok ? 0 : 1);
}

const sock = tls.connect({
  host,
  port: Number(port),
  servername,
  ca: fs.readFileSync(caPath),
  ALPNProtocols: ['http/1.1'],
});
sock.setTimeout(Number(timeoutArg || 10000), () => {
  sock.destroy();
  finish(false, 'ETIMEDOUT');
});
sock.on('connect', () => {
  report.local_ip = sock.localAddress;
  report.local_port = sock.localPort;
});
sock.on('secureConnect', () => {
  report.version = sock.getProtocol();
  sock.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
});
let body = '';
sock.on('data', (chunk) => {
  body += chunk.toString('latin1');
});
sock.on('end', () => {
  report.status = body.split('\r\n')[0];
  finish(report.version !== null, null);
});
sock.on('error', (err) => finish(false, err.code || err.message));
