// Starts stratum-pool-sha256 against a bcoin regtest node and logs one JSON line per event.
// Usage: node run-pool.js STRATUM_PORT RPC_PORT API_KEY ADDRESS [SHARE_DIFFICULTY]
// The tests use the default 0.0001 (many shares); a hard difficulty measures hashing alone.
'use strict';
const [stratumPort, rpcPort, apiKey, address, difficulty] = process.argv.slice(2);
// The library crashes on the first block candidate without it.
global.extraNoncePlaceholder = Buffer.from('f000000ff111111f', 'hex');
const Stratum = require('stratum-pool-sha256');

const log = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const pool = Stratum.createPool({
  coin: { name: 'bitcoin', symbol: 'BTC', algorithm: 'sha256' },
  address,
  daemons: [{ host: '127.0.0.1', port: Number(rpcPort), user: 'x', password: apiKey }],
  ports: { [stratumPort]: { diff: Number(difficulty || 0.0001) } },
  p2p: { enabled: false },
  blockRefreshInterval: 500,
  jobRebroadcastTimeout: 55,
  connectionTimeout: 600,
  banning: { enabled: false },
}, (ip, port, workerName, password, callback) => {
  callback({ error: null, authorized: true, disconnect: false });
});

pool.on('share', (isValidShare, isValidBlock, data) => {
  log({
    event: 'share',
    valid: Boolean(isValidShare),
    block: Boolean(isValidBlock),
    job: data.job,
    worker: data.worker,
    difficulty: data.difficulty,
    shareDiff: data.shareDiff,
    blockHash: data.blockHash,
    error: data.error,
  });
});
pool.on('log', (severity, text) => {
  if (/Stratum server started|Started|ready/i.test(text)) log({ event: 'log', severity, text });
});
pool.on('started', () => log({ event: 'started' }));
pool.start();
