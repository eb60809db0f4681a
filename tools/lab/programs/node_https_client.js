// Node.js HTTPS client for the tlsprobe lab: GET / once and report what happened.
//
//   node node_https_client.js HOST_IP PORT SERVERNAME CA_FILE [ALPN,ALPN...]
//
// Prints one JSON line: local address/port, negotiated TLS version and ALPN.
'use strict';

const fs = require('node:fs');
const https = require('node:https');

const [host, port, servername, caPath, alpnList] = process.argv.slice(2);
if (!host || !port || !servername || !caPath) {
  console.error('usage: node node_https_client.js HOST PORT SERVERNAME CA [ALPN,...]');
  process.exit(2);
}

const options = {
  host,
  port: Number(port),
  servername,
  ca: fs.readFileSync(caPath),
  path: '/',
  agent: false,
  headers: { host: servername, connection: 'close' },
};
if (alpnList) {
  options.ALPNProtocols = alpnList.split(',');
}

const req = https.request(options, (res) => {
  const sock = res.socket;
  const report = {
    local_ip: sock.localAddress,
    local_port: sock.localPort,
    version: sock.getProtocol(),
    alpn: sock.alpnProtocol || null,
    status: res.statusCode,
  };
  res.resume();
  res.on('end', () => {
    console.log(JSON.stringify(report));
  });
});
req.setTimeout(10000, () => req.destroy(new Error('timeout')));
req.on('error', (err) => {
  console.error(`node_https_client: ${err.message}`);
  process.exit(1);
});
req.end();
