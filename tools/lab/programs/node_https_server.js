// Node.js HTTPS server for the tlsprobe lab: HTTP/2 with HTTP/1.1 fallback.
//
//   node node_https_server.js PORT fullchain.pem leaf.key
//
// Listens dual-stack on [::]:PORT; ALPN offers h2 and http/1.1 (node's defaults
// for http2.createSecureServer with allowHTTP1). Answers every request with a
// short text body.
'use strict';

const fs = require('node:fs');
const http2 = require('node:http2');

const [port, certPath, keyPath] = process.argv.slice(2);
if (!port || !certPath || !keyPath) {
  console.error('usage: node node_https_server.js PORT CERT_CHAIN KEY');
  process.exit(2);
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(certPath),
  key: fs.readFileSync(keyPath),
  allowHTTP1: true,
});

server.on('request', (req, res) => {
  const sock = req.socket;
  const body = `hello from tlsprobe lab (node ${process.version}, HTTP/${req.httpVersion}, ` +
    `${sock.getProtocol ? sock.getProtocol() : 'tls'})\n`;
  res.writeHead(200, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.on('secureConnection', (tlsSocket) => {
  console.error(`node_https_server: ${tlsSocket.remoteAddress}:${tlsSocket.remotePort} ` +
    `${tlsSocket.getProtocol()} alpn=${tlsSocket.alpnProtocol} sni=${tlsSocket.servername}`);
});

server.listen(Number(port), '::', () => {
  console.error(`node_https_server: listening on [::]:${port}`);
});

process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
