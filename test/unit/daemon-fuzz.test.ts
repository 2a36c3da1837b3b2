/**
 * The daemon's handshake over real unix sockets, fuzzed (seeded): random and
 * mutated OPEN lines, random chunking and delays, half-closes. The sound
 * server is the memory backend, so this runs fast; test/integration/
 * hostile.test.ts does the same kinds of things against the real daemon.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBackend } from '../../src/backend/memory';
import { openServer } from '../../src/client';
import { DEFAULT_CONFIG } from '../../src/config';
import { Daemon } from '../../src/daemon';
import { loopSocketPath } from '../../src/protocol';
import { sleep, waitFor } from '../helpers/proc';
import { mulberry32 } from '../helpers/rng';

const prng = mulberry32;

interface Outcome {
  first: string | null;
  closed: boolean;
}

describe('daemon handshake fuzz (memory backend, real sockets)', function () {
  this.timeout(60000);
  const SEED = Number(process.env.AUDIOLOOP_FUZZ_SEED ?? 7);
  let tmp: string;
  let daemon: Daemon;
  let backend: MemoryBackend;

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-dfuzz-'));
    backend = new MemoryBackend();
    daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 2 }, socketDir: tmp, connect: () => backend, handshakeTimeoutMs: 400 });
    await daemon.start();
  });
  after(async function () {
    await daemon?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it(`400 hostile connections (seed ${SEED}): each gets OK, one clear ERR line, or a silent close; the daemon keeps serving`, async function () {
    const rnd = prng(SEED);
    const int = (n: number): number => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const templates = [
      'OPEN mode=read\n',
      'OPEN mode=write format=u8 rate=8000 channels=1 app=fz pid=3\n',
      'OPEN mode=readwrite\n',
      'OPEN mode=read rate=1\n',
      'OPEN mode=read mode=read\n',
      'OPEN mode=read\r\n',
      'open mode=read\n',
      'OPEN mode=read app=%ff\n',
      'OPEN mode=read',
      '',
    ];
    const one = async (): Promise<Outcome> => {
      let bytes = Buffer.from(pick(templates));
      if (rnd() < 0.4) {
        const arr = [...bytes];
        for (let k = int(4); k >= 0; k--) arr.splice(int(arr.length + 1), rnd() < 0.5 ? 1 : 0, int(256));
        bytes = Buffer.from(arr);
      }
      // floods stay under the loop's 64 KiB read-ahead: a writer that floods more before any
      // client and dies is only noticed when a client starts (tested in loop.test.ts)
      if (rnd() < 0.05) bytes = Buffer.concat([bytes, Buffer.alloc(int(60000), 0x41)]);
      const sock = net.connect(loopSocketPath(tmp, int(2)));
      const out: Outcome = { first: null, closed: false };
      let data = Buffer.alloc(0);
      sock.on('data', (c: Buffer) => {
        data = Buffer.concat([data, c]);
        const nl = data.indexOf(0x0a);
        if (out.first === null && nl >= 0) {
          out.first = data.subarray(0, nl).toString('latin1');
          if (out.first.startsWith('OK ')) sock.destroy(); // got the loop: let it go again
        }
      });
      sock.on('error', () => undefined);
      const closed = new Promise<void>((r) => sock.on('close', () => r()));
      await new Promise<void>((r) => sock.once('connect', () => r()).once('error', () => r()));
      let off = 0;
      while (off < bytes.length && !sock.destroyed) {
        const n = 1 + int(rnd() < 0.5 ? 8 : 70000);
        sock.write(bytes.subarray(off, off + n));
        off += n;
        if (rnd() < 0.1) await sleep(int(30));
      }
      if (rnd() < 0.5 && !sock.destroyed) sock.end();
      await Promise.race([closed, sleep(5000)]);
      out.closed = sock.destroyed || sock.closed;
      if (!out.closed) sock.destroy();
      return out;
    };
    const outcomes: Outcome[] = [];
    for (let batch = 0; batch < 20; batch++) outcomes.push(...(await Promise.all(Array.from({ length: 20 }, one))));
    const counts: Record<string, number> = {};
    for (const o of outcomes) {
      assert.ok(o.closed, 'every connection is closed by the daemon within 5 s');
      const key = o.first === null ? 'silent' : o.first.startsWith('OK ') ? 'OK' : /^ERR ([A-Z0-9]+) \d+ \S/.exec(o.first)?.[1] ?? `?${o.first}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    for (const k of Object.keys(counts)) assert.ok(['OK', 'silent', 'EPROTO', 'EINVAL', 'E2BIG', 'EBUSY', 'ETIMEDOUT'].includes(k), `unexpected reply ${k}: ${JSON.stringify(counts)}`);
    for (const k of ['OK', 'EPROTO', 'EINVAL']) assert.ok((counts[k] ?? 0) > 5, `${k}: ${JSON.stringify(counts)}`);
    if (process.env.AUDIOLOOP_FUZZ_STATS) console.log(JSON.stringify(counts));
    await waitFor(() => daemon.status().loops.every((l) => l.state === 'idle'), 5000, 'both loops idle').catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(daemon.status().loops)}`);
    });
    for (const n of [0, 1]) {
      const srv = await openServer(n, { mode: 'read', socketDir: tmp });
      assert.equal(srv.node, `audioloop${n}`);
      await srv.close();
    }
  });
});
