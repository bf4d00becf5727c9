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

// `--mode ws-deflate` (issue 20) sets PERMESSAGE_DEFLATE=1: ws's permessage-deflate as
// it is usually turned on (per connection, context takeover, zlib defaults), compressing
// messages from 256 bytes as hubcast does; and PAYLOAD=json, for JSON-like payloads.
const DEFLATE = process.env.PERMESSAGE_DEFLATE === '1';
const JSON_PAYLOAD = process.env.PAYLOAD === 'json';

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  backlog: 4096,
  // Off by default, said out loud: the other systems send uncompressed frames too.
  perMessageDeflate: DEFLATE ? { threshold: 256 } : false,
  clientTracking: true,
});

// JSON-like records after the 16-byte stamp, as the Rust side's `Stamp::Json` makes them.
function jsonTemplate(size) {
  const words = ['hello', 'price', 'update', 'order', 'shipped', 'the', 'market', 'closed',
    'at', 'open', 'new', 'message'];
  let s = ' '.repeat(16) + '[';
  for (let i = 0; s.length < size; i++) {
    const x = Number((BigInt(i) * 2654435761n) % 1000003n);
    s += `{"id":${100000 + i * 7},"user":"user${x % 97}","ts":${1733600000000 + x},` +
      `"price":${x % 5000}.${String(x % 100).padStart(2, '0')},` +
      `"text":"${words[x % 12]} ${words[Math.floor(x / 12) % 12]} ${words[Math.floor(x / 144) % 12]}"},`;
  }
  return Buffer.from(s.slice(0, size));
}

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
  const template = JSON_PAYLOAD ? jsonTemplate(Math.max(size, 16)) : Buffer.alloc(Math.max(size, 16), 'x');
  const perPass = Math.max(1, Math.floor(PASS_BYTES / template.length));
  // DEFLATE: sends not yet done, and the step to take once they are few again.
  let outstanding = 0;
  let resume = null;
  const sent = () => {
    outstanding--;
    if (resume !== null && outstanding <= wss.clients.size) {
      const r = resume;
      resume = null;
      setImmediate(r);
    }
  };
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
      if (DEFLATE) {
        // Compression is asynchronous (zlib's thread pool): bufferedAmount counts what
        // waits to be compressed, which no 'drain' reports. Wait on the sends' callbacks
        // instead: at most two messages in flight per client.
        for (const c of wss.clients) {
          outstanding++;
          c.send(buf, sent);
        }
        i++;
        if (outstanding > 2 * wss.clients.size && i < count) {
          resume = step;
          return;
        }
        continue;
      }
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
