// The fan-out bench's `node-ws` system: a broadcast server on the `ws` package, the most
// used WebSocket server for Node.js, driven over stdin/stdout by the same control protocol
// as the bench's own `--serve` children (see benches/fanout/server.rs):
//
//   -> port P                       once listening on 127.0.0.1:P
//   <- expect N MS                  -> connected N   (or `error ...` after MS ms)
//   <- publish START COUNT SIZE 0   -> published COUNT 0 0 0 NS   (flood only)
//   <- stats                        -> stats connected=N
//   <- quit                         exit
//
// The publisher is the host-side loop every `ws` tutorial shows,
// `for (const c of wss.clients) c.send(buf)`, with one fresh Buffer per message (ws keeps a
// reference to it until the socket has written it, so it must not be reused). As with
// hubcast's flow control, it does not run ahead of the clients without bound: it waits
// (for that socket's 'drain') while a client's `bufferedAmount`, the documented measure of
// what is queued in user space, is past HIGH_WATER, and it yields to the event loop every
// PASS_BYTES of payload so that sockets are written while it publishes.
//
// Run by `cargo bench --bench fanout -- --mode ws`; install the package first with
// `npm ci` in this directory.
'use strict';

const readline = require('node:readline');
const { WebSocketServer } = require('ws');

// Bytes queued in user space for one client above which the publisher waits.
const HIGH_WATER = 16 * 1024;
// Payload bytes sent to each client between two yields to the event loop.
const PASS_BYTES = 256 * 1024;

function say(line) {
  process.stdout.write(line + '\n');
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  backlog: 4096,
  // The default, said out loud: the other systems send uncompressed frames too.
  perMessageDeflate: false,
  clientTracking: true,
});

wss.on('listening', () => say(`port ${wss.address().port}`));
wss.on('error', (e) => {
  say(`error ${e.message}`);
  process.exit(1);
});
wss.on('connection', (ws) => {
  // ws sets TCP_NODELAY itself; errors (a client gone) only end that client.
  ws.on('error', () => {});
});

function expect(n, ms) {
  const deadline = Date.now() + ms;
  const check = () => {
    const c = wss.clients.size;
    if (c === n) {
      say(`connected ${c}`);
    } else if (Date.now() > deadline) {
      say(`error expected ${n} clients, have ${c}`);
    } else {
      setTimeout(check, 1);
    }
  };
  check();
}

function publish(start, count, size, rate) {
  if (rate > 0) {
    say('error node-ws publishes floods only (rate 0)');
    return;
  }
  const template = Buffer.alloc(Math.max(size, 16), 'x');
  const perPass = Math.max(1, Math.floor(PASS_BYTES / template.length));
  const t0 = process.hrtime.bigint();
  let i = 0;
  const step = () => {
    const end = Math.min(count, i + perPass);
    while (i < end) {
      // Sequence number and send time (CLOCK_MONOTONIC ns, as the bench's), little-endian.
      const buf = Buffer.from(template);
      buf.writeBigUInt64LE(BigInt(start + i), 0);
      buf.writeBigUInt64LE(process.hrtime.bigint(), 8);
      let fullest = null;
      let most = HIGH_WATER;
      for (const c of wss.clients) {
        c.send(buf);
        const queued = c.bufferedAmount;
        if (queued > most) {
          most = queued;
          fullest = c;
        }
      }
      i++;
      if (fullest !== null && i < count) {
        // Wait for the fullest client to write out, then go on.
        fullest._socket.once('drain', step);
        return;
      }
    }
    if (i < count) {
      setImmediate(step);
    } else {
      say(`published ${count} 0 0 0 ${process.hrtime.bigint() - t0}`);
    }
  };
  step();
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const w = line.trim().split(/\s+/);
  switch (w[0]) {
    case 'expect':
      expect(Number(w[1]), Number(w[2]));
      break;
    case 'publish':
      publish(Number(w[1]), Number(w[2]), Number(w[3]), Number(w[4]));
      break;
    case 'stats':
      say(`stats connected=${wss.clients.size}`);
      break;
    case 'quit':
      process.exit(0);
      break;
    default:
      say(`error unknown command ${JSON.stringify(line)}`);
  }
});
rl.on('close', () => process.exit(0));
