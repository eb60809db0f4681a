// Plain HTTP/1.1 server (node:http) for the tlsprobe lab.
//
//   node node_http_server.js PORT
//
// Answers every request with a short text body. Anything that is not HTTP, such as
// a TLS ClientHello sent to this port by mistake, is rejected by node's own parser,
// which answers "HTTP/1.1 400 Bad Request" and closes the connection (node's default
// 'clientError' behaviour; no handler is installed on purpose).
'use strict';

const http = require('node:http');

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node node_http_server.js PORT');
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const body = `plain http from tlsprobe lab (node ${process.version})\n`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, '::', () => {
  console.error(`node_http_server: listening on [::]:${port}`);
});

process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
