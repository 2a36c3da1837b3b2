/**
 * The Loop state machine (src/loop.ts) over the in-memory backend: real
 * unix sockets for the server end, a fake sound server for the client end.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBackend, type MemoryClient, type MemoryEndpoint } from '../../src/backend/memory';
import { openServer } from '../../src/client';
import { DEFAULT_CONFIG } from '../../src/config';
import { Daemon } from '../../src/daemon';
import { DATA_PLANES, isLegalTransition, Loop, LOOP_TRANSITIONS, OK_WAIT_MS, type DataPlane, type LoopState } from '../../src/loop';
import { createLogger } from '../../src/log';
import { parseOpen, ProtocolError, type OpenRequest } from '../../src/protocol';
import { checkCounter, counterPcm } from '../helpers/pcm';
import { sleep, waitFor } from '../helpers/proc';

const STATES: LoopState[] = ['idle', 'waiting', 'running', 'draining', 'closing'];

/** The program's side of a server-end connection: collects what the daemon sends. */
class Prog {
  data: Buffer = Buffer.alloc(0);
  ended = false;
  closed = false;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => (this.data = Buffer.concat([this.data, c])));
    sock.on('end', () => (this.ended = true));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => undefined);
  }
  /** the text lines received so far (only meaningful before PCM) */
  lines(): string[] {
    return this.data.toString('latin1').split('\n').slice(0, -1);
  }
  /** bytes after the first `n` lines */
  after(n: number): Buffer {
    let off = 0;
    for (let i = 0; i < n; i++) off = this.data.indexOf(0x0a, off) + 1;
    return this.data.subarray(off);
  }
}

let tmp: string;
let listener: net.Server;
let sockPath: string;
const accepted: net.Socket[] = [];
let acceptWaiters: ((s: net.Socket) => void)[] = [];

/** A connected pair: the daemon side (given to the loop, paused like the daemon's) and the program side. */
async function pair(): Promise<{ daemonSide: net.Socket; prog: Prog }> {
  const got = new Promise<net.Socket>((r) => acceptWaiters.push(r));
  const progSock = net.connect(sockPath);
  await new Promise<void>((r, j) => {
    progSock.once('connect', r);
    progSock.once('error', j);
  });
  const daemonSide = await got;
  return { daemonSide, prog: new Prog(progSock) };
}

interface Harness {
  backend: MemoryBackend;
  loop: Loop;
  log: string[];
  changes: string[];
}

function harness(opts: { bufferMs?: number; quantum?: number; clientGraceMs?: number; dataPlane?: DataPlane; okWaitMs?: number } = {}): Harness {
  const backend = new MemoryBackend({ quantum: opts.quantum ?? 256 });
  const log: string[] = [];
  const loop = new Loop(0, () => backend, {
    bufferMs: opts.bufferMs ?? 200,
    clientGraceMs: opts.clientGraceMs ?? 50,
    log: createLogger('debug', 't', (l) => log.push(l)),
    ...(opts.dataPlane ? { dataPlane: opts.dataPlane } : {}),
    ...(opts.okWaitMs !== undefined ? { okWaitMs: opts.okWaitMs } : {}),
  });
  const changes: string[] = [];
  loop.on('state', (to: LoopState, from: LoopState) => changes.push(`${from} -> ${to}`));
  return { backend, loop, log, changes };
}

function req(line: string): OpenRequest {
  return parseOpen(line);
}

async function open(h: Harness, line: string): Promise<{ prog: Prog; ep: MemoryEndpoint; daemonSide: net.Socket }> {
  const { daemonSide, prog } = await pair();
  h.loop.attach(daemonSide, req(line), Buffer.alloc(0));
  const ep = h.backend.endpoint('audioloop0');
  assert.ok(ep, 'the node exists while the server end is open');
  return { prog, ep, daemonSide };
}

async function startClient(h: Harness, ep: MemoryEndpoint, app = 'paplay', pid = 4242): Promise<MemoryClient> {
  const c = ep.connectClient({ appName: app, name: `${app} stream`, pid });
  c.start();
  await waitFor(() => h.loop.state === 'running', 3000, 'running');
  return c;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * The sound server registers the nodes of `h.backend` late: their stats say
 * nodeId -1 (as a PipeWire stream's before it is bound) until release(),
 * which then emits 'state' on each, as the PipeWire backend does when the
 * node id arrives.
 */
function holdRegistration(h: Harness): { release: () => void } {
  let held = true;
  const eps: MemoryEndpoint[] = [];
  const create = h.backend.createEndpoint.bind(h.backend);
  h.backend.createEndpoint = (opts, cable) => {
    const ep = create(opts, cable);
    const stats = ep.stats.bind(ep);
    ep.stats = () => {
      const st = stats();
      return held ? { ...st, nodeId: -1 } : st;
    };
    eps.push(ep);
    return ep;
  };
  return {
    release: () => {
      held = false;
      for (const ep of eps) ep.emit('state', 'paused');
    },
  };
}

describe('Loop state machine (memory backend)', function () {
  this.timeout(20000);

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-loop-'));
    sockPath = path.join(tmp, 'pair.sock');
    listener = net.createServer({ pauseOnConnect: true }, (s) => {
      accepted.push(s);
      const w = acceptWaiters.shift();
      if (w) w(s);
    });
    await new Promise<void>((r) => listener.listen(sockPath, r));
  });
  after(function () {
    for (const s of accepted) s.destroy();
    listener?.close();
    acceptWaiters = [];
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('transition table', function () {
    it('allows exactly the transitions of the diagram', function () {
      const legal = new Set(['idle>waiting', 'waiting>running', 'waiting>closing', 'running>draining', 'running>closing', 'draining>closing', 'closing>idle']);
      let n = 0;
      for (const from of STATES) {
        for (const to of STATES) {
          assert.equal(isLegalTransition(from, to), legal.has(`${from}>${to}`), `${from} -> ${to}`);
          if (isLegalTransition(from, to)) n++;
        }
      }
      assert.equal(n, 7);
      assert.deepEqual(Object.keys(LOOP_TRANSITIONS).sort(), [...STATES].sort());
    });

    it('setState refuses an illegal change: throws, logs, keeps the state', function () {
      const h = harness();
      const setState = (h.loop as unknown as { setState(s: LoopState, why: string): void }).setState.bind(h.loop);
      for (const to of ['running', 'draining', 'closing'] as const) {
        assert.throws(() => setState(to, 'test'), /illegal state change idle -> /);
        assert.equal(h.loop.state, 'idle');
      }
      assert.deepEqual(h.changes, []);
      assert.equal(h.log.filter((l) => / error .*illegal state change idle -> /.test(l)).length, 3);
      setState('waiting', 'test');
      assert.equal(h.loop.state, 'waiting');
      assert.throws(() => setState('idle', 'test'), /illegal state change waiting -> idle/);
      assert.throws(() => setState('draining', 'test'), /illegal state change waiting -> draining/);
      assert.equal(h.loop.state, 'waiting');
    });
  });

  describe('read mode (the node is a sink)', function () {
    it('idle -> waiting on attach: OK line, a sink node with the server format, nothing else sent', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read format=s24le rate=96000 channels=6 app=rec pid=77');
      await waitFor(() => prog.lines().length >= 1, 3000, 'OK line');
      assert.deepEqual(prog.lines(), ['OK instance=0 node=audioloop0 mode=read format=s24le rate=96000 channels=6 frame=18']);
      assert.equal(h.loop.state, 'waiting');
      assert.deepEqual(h.changes, ['idle -> waiting']);
      assert.equal(ep.options.direction, 'sink');
      assert.deepEqual([ep.options.format, ep.options.rate, ep.options.channels], ['s24le', 96000, 6]);
      const st = h.loop.status();
      assert.equal(st.mode, 'read');
      assert.deepEqual(st.server && [st.server.app, st.server.pid, st.server.nonblock], ['rec', 77, false]);
      await sleep(50);
      assert.equal(prog.data.length, prog.lines()[0]!.length + 1, 'no START before a client');
      await h.loop.shutdown();
    });

    it('waiting -> running when a client starts: START names the client; PCM arrives byte-exact', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read format=s16le rate=48000 channels=2');
      // a real client: it keeps the graph fed with silence once its data is played
      const c = ep.connectClient({ appName: 'paplay', pid: 4242, silenceWhenEmpty: true }).start();
      await waitFor(() => h.loop.state === 'running', 3000, 'running');
      await waitFor(() => prog.lines().length >= 2, 3000, 'START line');
      assert.equal(prog.lines()[1], 'START app=paplay pid=4242');
      const pcm = counterPcm('s16le', 2, 10000);
      c.play(pcm);
      const deadline = Date.now() + 10000;
      while (prog.after(2).length < pcm.length) {
        assert.ok(Date.now() < deadline, `stalled at ${prog.after(2).length} bytes`);
        h.backend.clock.step();
        await sleep(1);
      }
      const got = prog.after(2);
      assert.ok(got.subarray(0, pcm.length).equals(pcm), 'the server reads exactly what the client played');
      assert.ok(got.subarray(pcm.length).every((b) => b === 0), 'then silence');
      assert.equal(h.loop.status().bytes, got.length);
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running']);
      await h.loop.shutdown();
    });

    it('client stops: running -> draining -> closing -> idle; every byte in flight is delivered before EOF', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read format=s16le rate=48000 channels=2');
      const c = await startClient(h, ep);
      const pcm = counterPcm('s16le', 2, 12000); // 48000 bytes: fits the 64 KiB ring
      c.play(pcm);
      // the whole lot reaches the ring within one macrotask, then the client leaves
      h.backend.clock.step(Math.ceil(12000 / 256));
      assert.equal(ep.stats().fill, pcm.length);
      c.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      await waitFor(() => h.loop.state === 'idle', 5000, 'idle');
      await waitFor(() => prog.ended, 3000, 'EOF at the server');
      assert.ok(prog.after(2).equals(pcm), `all ${pcm.length} bytes before EOF, got ${prog.after(2).length}`);
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> draining', 'draining -> closing', 'closing -> idle']);
      // the session ended because the client left: nothing is linked that could be moved elsewhere
      assert.equal(c.state, 'stopped', 'the client left by itself, it was not orphaned');
      assert.deepEqual(ep.linkedClients(), []);
      assert.ok(ep.destroyed);
      assert.equal(h.backend.endpoint('audioloop0'), undefined, 'the node is gone');
    });

    it('draining waits for a slow server: nothing is lost when the socket backs up', async function () {
      const h = harness({ bufferMs: 2000 }); // a 512 KiB ring
      const { prog, ep } = await open(h, 'OPEN mode=read format=s16le rate=48000 channels=2');
      const c = await startClient(h, ep);
      prog.sock.pause(); // the server does not read for a while
      const frames = 120000; // 480 kB: more than the socket buffers take
      const pcm = counterPcm('s16le', 2, frames);
      c.play(pcm);
      h.backend.clock.step(Math.ceil(frames / 256));
      assert.equal(ep.stats().fill, pcm.length);
      c.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      await waitFor(() => h.changes.includes('running -> draining'), 3000, 'draining');
      await sleep(100);
      assert.equal(h.loop.state, 'draining', 'still draining while the server does not read');
      prog.sock.resume();
      await waitFor(() => h.loop.state === 'idle' && prog.ended, 5000, 'idle and EOF');
      const got = prog.after(2);
      const chk = checkCounter(got, 's16le', 2);
      assert.equal(got.length, pcm.length);
      assert.equal(chk.frames, frames, JSON.stringify(chk));
    });

    it('the server closes while running: running -> closing -> idle, the client is ended', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read');
      const c = await startClient(h, ep);
      prog.sock.destroy();
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle');
      assert.deepEqual(h.changes.slice(2), ['running -> closing', 'closing -> idle']);
      assert.equal(c.state, 'ended');
      assert.equal(h.backend.endpoints().length, 0);
    });

    it('the server closes while waiting: waiting -> closing -> idle, the node goes', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read');
      prog.sock.end();
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle');
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> closing', 'closing -> idle']);
      assert.ok(ep.destroyed);
    });
  });

  describe('write mode (the node is a source)', function () {
    it('nothing enters the ring before a client starts; then the server data is recorded byte-exact', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write format=s16le rate=48000 channels=2');
      assert.equal(ep.options.direction, 'source');
      const pcm = counterPcm('s16le', 2, 2048); // 8 cycles of 256 frames
      prog.sock.write(pcm);
      await sleep(100);
      assert.equal(h.loop.state, 'waiting');
      assert.equal(ep.stats().fill, 0, 'the first write waits for a client');
      assert.equal(h.loop.status().bytes, 0);
      const c = await startClient(h, ep, 'parecord', 99);
      await waitFor(() => prog.lines().length >= 2, 3000, 'START');
      assert.equal(prog.lines()[1], 'START app=parecord pid=99');
      await waitFor(() => ep.stats().fill === pcm.length, 3000, 'the data in the ring');
      h.backend.clock.step(8);
      assert.ok(c.recorded().equals(pcm), 'the client records exactly what the server wrote');
      assert.equal(ep.stats().xruns, 0);
      await h.loop.shutdown();
    });

    it('client with another sample format: the memory backend converts (s16le server, f32le client)', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write format=s16le rate=48000 channels=1');
      const c = ep.connectClient({ appName: 'pw-record', format: 'f32le' }).start();
      await waitFor(() => h.loop.state === 'running', 3000, 'running');
      const pcm = Buffer.alloc(512);
      for (let i = 0; i < 256; i++) pcm.writeInt16LE(i * 100 - 12800, i * 2);
      prog.sock.write(pcm);
      await waitFor(() => ep.stats().fill === 512, 3000, 'data in the ring');
      h.backend.clock.step();
      const rec = c.recorded();
      assert.equal(rec.length, 256 * 4);
      for (let i = 0; i < 256; i++) assert.equal(rec.readFloatLE(i * 4), (i * 100 - 12800) / 32768);
      await h.loop.shutdown();
    });

    it('backpressure: the loop stops reading while the ring is full and loses nothing', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write format=s16le rate=48000 channels=2');
      const c = await startClient(h, ep);
      const frames = 262144; // 1 MiB, 16 rings
      const pcm = counterPcm('s16le', 2, frames);
      prog.sock.write(pcm);
      const size = ep.stats().size;
      await waitFor(() => ep.stats().fill === size, 3000, 'a full ring');
      await sleep(100);
      assert.equal(ep.stats().fill, size, 'never more than the ring');
      assert.equal(h.loop.status().bytes, size, 'the loop took exactly one ring');
      assert.ok(prog.sock.writableLength > 0, 'the server sees backpressure (its writes queue up)');
      const q = 256 * 4;
      const deadline = Date.now() + 15000;
      while (c.recorded().length < pcm.length) {
        assert.ok(Date.now() < deadline, `stalled at ${c.recorded().length} bytes`);
        if (ep.stats().fill >= q) {
          h.backend.clock.step();
          await tick();
        } else {
          await sleep(2);
        }
      }
      assert.ok(c.recorded().equals(pcm), 'every byte recorded once, in order');
      assert.equal(ep.stats().xruns, 0, 'the ring never ran dry');
      assert.equal(h.loop.status().bytes, pcm.length);
      await h.loop.shutdown();
    });

    it('the client stops: RESET once, then EOF; what was queued is dropped (running -> closing -> idle)', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write');
      const c = await startClient(h, ep);
      prog.sock.write(counterPcm('s16le', 2, 262144)); // far more than the ring
      await waitFor(() => ep.stats().fill === ep.stats().size, 3000, 'a full ring');
      c.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      // the daemon closes with unread data: the server sees RESET, then the connection reset
      await waitFor(() => h.loop.state === 'idle' && prog.closed, 3000, 'idle and closed');
      assert.deepEqual(prog.lines(), [prog.lines()[0], 'START app=paplay pid=4242', 'RESET']);
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> closing', 'closing -> idle']);
      assert.equal(c.state, 'stopped', 'the client left by itself, it was not orphaned');
      assert.deepEqual(ep.linkedClients(), []);
    });

    it('the server finishes (EOF): running -> draining, the ring is played out, then closing -> idle', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write format=s16le rate=48000 channels=2');
      const c = await startClient(h, ep);
      const pcm = counterPcm('s16le', 2, 4000);
      prog.sock.end(pcm);
      await waitFor(() => h.loop.state === 'draining', 3000, 'draining');
      h.backend.clock.run(2);
      try {
        await waitFor(() => h.loop.state === 'idle', 10000, 'idle');
      } finally {
        h.backend.clock.halt();
      }
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> draining', 'draining -> closing', 'closing -> idle']);
      const rec = c.recorded();
      assert.ok(rec.length >= pcm.length);
      assert.ok(rec.subarray(0, pcm.length).equals(pcm), 'everything the server wrote was played');
      assert.equal(c.state, 'ended');
    });

    it('beyond the read-ahead (64 KiB) a dead writing server is noticed once a client starts, and its data is played first', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write');
      const pcm = counterPcm('s16le', 2, 131072); // 512 KiB
      prog.sock.end(pcm);
      await sleep(200);
      assert.equal(h.loop.state, 'waiting', 'the paused socket hides the EOF');
      assert.ok(h.loop.status().bytes === 0 && ep.stats().fill === 0, 'nothing in the ring before a client');
      const c = await startClient(h, ep);
      h.backend.clock.run(1);
      try {
        await waitFor(() => h.loop.state === 'idle', 15000, 'idle');
      } finally {
        h.backend.clock.halt();
      }
      assert.ok(c.recorded().subarray(0, pcm.length).equals(pcm), 'everything the server wrote was played');
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> draining', 'draining -> closing', 'closing -> idle']);
    });

    it('the server goes away while waiting, even after writing 60 kB: waiting -> closing -> idle (no node, no EBUSY left behind)', async function () {
      const h = harness();
      const { prog } = await open(h, 'OPEN mode=write');
      prog.sock.end(Buffer.alloc(60000, 1));
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle');
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> closing', 'closing -> idle']);
      assert.equal(h.backend.endpoints().length, 0);
      const again = await open(h, 'OPEN mode=read');
      assert.equal(h.loop.state, 'waiting');
      again.prog.sock.destroy();
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle again');
    });

    it('the sound server goes away while running: RESET for the writing server, running -> closing -> idle', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write');
      await startClient(h, ep);
      h.backend.lose();
      await waitFor(() => h.loop.state === 'idle' && prog.closed, 3000, 'idle and closed');
      assert.deepEqual(prog.lines().slice(1), ['START app=paplay pid=4242', 'RESET']);
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> closing', 'closing -> idle']);
    });

    it('shutdown while waiting: RESET for a writing server, waiting -> closing -> idle', async function () {
      const h = harness();
      const { prog } = await open(h, 'OPEN mode=write');
      await h.loop.shutdown();
      await waitFor(() => prog.closed, 3000, 'closed');
      assert.deepEqual(prog.lines().slice(1), ['RESET']);
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> closing', 'closing -> idle']);
    });
  });

  describe('OK only once the node is registered', function () {
    for (const plane of DATA_PLANES) {
      for (const mode of ['read', 'write'] as const) {
        it(`${plane} data plane, mode=${mode}: no OK while the node has no id; OK (alone) once it is registered`, async function () {
          const h = harness({ dataPlane: plane });
          const reg = holdRegistration(h);
          const { prog, ep } = await open(h, `OPEN mode=${mode}`);
          assert.equal(h.loop.state, 'waiting');
          await sleep(150);
          assert.equal(prog.data.length, 0, `nothing before the node is registered, got ${JSON.stringify(prog.data.toString('latin1'))}`);
          assert.equal(h.loop.status().nodeId, -1);
          reg.release();
          await waitFor(() => prog.lines().length >= 1, 3000, 'OK line');
          assert.deepEqual(prog.lines(), [`OK instance=0 node=audioloop0 mode=${mode} format=s16le rate=48000 channels=2 frame=4`]);
          assert.equal(h.loop.status().nodeId, ep.nodeId);
          assert.ok(h.log.some((l) => /OK to the server \(node \d+ registered after \d+ ms\)/.test(l)), h.log.join('\n'));
          await sleep(50);
          assert.equal(prog.data.length, prog.lines()[0]!.length + 1, 'nothing else');
          await h.loop.shutdown();
        });
      }
    }

    it(`bounded: a node never registered gets OK after okWaitMs (default ${OK_WAIT_MS} ms) anyway, with a warning`, async function () {
      assert.equal(OK_WAIT_MS, 3000);
      const h = harness({ okWaitMs: 200 });
      holdRegistration(h);
      const t0 = Date.now();
      const { prog } = await open(h, 'OPEN mode=read');
      await waitFor(() => prog.lines().length >= 1, 3000, 'OK line');
      const ms = Date.now() - t0;
      assert.ok(ms >= 190, `OK after ${ms} ms`);
      assert.match(prog.lines()[0]!, /^OK instance=0 node=audioloop0 mode=read /);
      assert.ok(h.log.some((l) => /WARN.*not registered on the sound server after 200 ms; sending OK anyway/i.test(l)), h.log.join('\n'));
      await h.loop.shutdown();
    });

    it('every other line waits for OK: TIMEOUT (wait=MS counts from OK), START, RESET, EOF', async function () {
      // wait=60: no TIMEOUT while OK is held back; the first one 60 ms after OK
      const h = harness();
      const reg = holdRegistration(h);
      const a = await open(h, 'OPEN mode=read wait=60');
      await sleep(200);
      assert.equal(a.prog.data.length, 0, 'no TIMEOUT before OK');
      reg.release();
      const okAt = Date.now();
      await waitFor(() => a.prog.lines().length >= 2, 3000, 'OK, TIMEOUT');
      assert.ok(Date.now() - okAt >= 50, 'TIMEOUT wait=MS after OK');
      assert.match(a.prog.lines()[0]!, /^OK /);
      assert.equal(a.prog.lines()[1], 'TIMEOUT wait=60');
      await h.loop.shutdown();

      // clock=1: no SILENCE before OK; the clock runs from OK
      for (const plane of DATA_PLANES) {
        const hc = harness({ dataPlane: plane });
        const regc = holdRegistration(hc);
        const k = await open(hc, 'OPEN mode=read clock=1');
        await sleep(150);
        assert.equal(k.prog.data.length, 0, `${plane}: no SILENCE before OK, got ${JSON.stringify(k.prog.data.toString('latin1'))}`);
        regc.release();
        const okAt = Date.now();
        await waitFor(() => k.prog.lines().length >= 3, 3000, `${plane}: OK, SILENCE, SILENCE`);
        const frames = k.prog.lines().slice(1).reduce((sum, l) => sum + Number(/^SILENCE frames=(\d+)$/.exec(l)?.[1] ?? NaN), 0);
        assert.match(k.prog.lines()[0]!, /^OK /, plane);
        // counted from OK: no more than the frames due since then (none for the 150 ms held back)
        assert.ok(frames <= ((Date.now() - okAt + 15) * 48000) / 1000, `${plane}: ${frames} frames of SILENCE ${Date.now() - okAt} ms after OK`);
        await hc.loop.shutdown();
      }

      // a client that starts before the id is known: OK, then START
      const h2 = harness();
      holdRegistration(h2);
      const b = await open(h2, 'OPEN mode=read');
      b.ep.connectClient({ appName: 'paplay', pid: 7 }).start();
      await waitFor(() => b.prog.lines().length >= 2, 3000, 'OK, START');
      assert.match(b.prog.lines()[0]!, /^OK /);
      assert.equal(b.prog.lines()[1], 'START app=paplay pid=7');
      await h2.loop.shutdown();

      // shutdown before registration: a writer gets OK, RESET, EOF; a reader OK, EOF
      for (const [mode, after] of [['write', ['RESET']], ['read', []]] as const) {
        for (const plane of DATA_PLANES) {
          const h3 = harness({ dataPlane: plane });
          holdRegistration(h3);
          const c = await open(h3, `OPEN mode=${mode}`);
          await h3.loop.shutdown();
          await waitFor(() => c.prog.ended, 3000, `EOF (${plane}, ${mode})`);
          assert.equal(c.prog.lines().length, 1 + after.length, `${plane} ${mode}: ${JSON.stringify(c.prog.lines())}`);
          assert.match(c.prog.lines()[0]!, new RegExp(`^OK instance=0 node=audioloop0 mode=${mode} `), `${plane} ${mode}`);
          assert.deepEqual(c.prog.lines().slice(1), after, `${plane} ${mode}`);
        }
      }
    });

    it('the sound server away at attach: OK at once (the node comes with restore()); lost while registering: OK then', async function () {
      const h = harness();
      h.backend.lose();
      const away = new MemoryBackend({ quantum: 256 });
      let backend: MemoryBackend = h.backend;
      const loop = new Loop(0, () => backend, { bufferMs: 200, clientGraceMs: 50 });
      const a = await pair();
      loop.attach(a.daemonSide, req('OPEN mode=read'), Buffer.alloc(0));
      await waitFor(() => a.prog.lines().length >= 1, 3000, 'OK line');
      assert.match(a.prog.lines()[0]!, /^OK /);
      assert.equal(loop.state, 'waiting');
      backend = away;
      assert.equal(loop.restore(), true);
      assert.ok(away.endpoint('audioloop0'));
      await sleep(30);
      assert.equal(a.prog.lines().length, 1, 'one OK only');
      await loop.shutdown();

      const h2 = harness();
      holdRegistration(h2);
      const b = await open(h2, 'OPEN mode=read');
      await sleep(50);
      assert.equal(b.prog.data.length, 0);
      h2.backend.lose();
      await waitFor(() => b.prog.lines().length >= 1, 3000, 'OK line');
      assert.match(b.prog.lines()[0]!, /^OK /);
      assert.equal(h2.loop.state, 'waiting', 'the server keeps waiting for the sound server');
      await h2.loop.shutdown();
    });
  });

  describe('refusals and events in the wrong state', function () {
    it('a second server is EBUSY (naming the first); the first is untouched', async function () {
      const h = harness();
      const { ep } = await open(h, 'OPEN mode=read app=first pid=11');
      const { daemonSide, prog } = await pair();
      assert.throws(() => h.loop.attach(daemonSide, req('OPEN mode=write'), Buffer.alloc(0)), (e: unknown) => {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.code, 'EBUSY');
        assert.match(e.message, /already open by first \(pid 11\), mode=read/);
        return true;
      });
      assert.equal(h.loop.state, 'waiting');
      assert.equal(h.backend.endpoint('audioloop0'), ep);
      assert.equal(h.backend.created.length, 1, 'no second node');
      await sleep(30);
      assert.equal(prog.data.length, 0, 'attach does not write to a refused socket');
      daemonSide.destroy();
      await h.loop.shutdown();
    });

    it('a closed backend: ENODEV, the loop stays idle; a bad format from the backend: EINVAL', async function () {
      const h = harness();
      h.backend.close();
      const a = await pair();
      assert.throws(() => h.loop.attach(a.daemonSide, req('OPEN mode=read'), Buffer.alloc(0)), { code: 'ENODEV' });
      assert.equal(h.loop.state, 'idle');
      const h2 = harness();
      const b = await pair();
      const bad: OpenRequest = { mode: 'read', format: 's16le', rate: 1000, channels: 2, nonblock: false };
      assert.throws(() => h2.loop.attach(b.daemonSide, bad, Buffer.alloc(0)), { code: 'EINVAL' });
      assert.equal(h2.loop.state, 'idle');
      assert.deepEqual([h.changes, h2.changes], [[], []]);
      a.daemonSide.destroy();
      b.daemonSide.destroy();
    });

    it('client events that do not apply are ignored (stop while waiting, start while draining)', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=read');
      const early = ep.connectClient({ appName: 'early' }).start();
      early.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      await sleep(30);
      // start+stop while waiting: the start moves to running, the stop drains and closes
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle after a start/stop blip');
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> draining', 'draining -> closing', 'closing -> idle']);
      assert.ok(prog.ended);

      const h2 = harness();
      const o2 = await open(h2, 'OPEN mode=read');
      const lone = o2.ep.connectClient({ appName: 'linked-only' }); // linked, never started
      lone.stop();
      await sleep(50);
      assert.equal(h2.loop.state, 'waiting', 'a client that never started changes nothing');
      await h2.loop.shutdown();
      assert.equal(lone.state, 'ended');
    });

    it('every state change is logged once as "from -> to (why)" by the single setState', async function () {
      const h = harness();
      const { ep } = await open(h, 'OPEN mode=read');
      const c = await startClient(h, ep);
      c.play(counterPcm('s16le', 2, 512));
      h.backend.clock.step(2);
      c.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      await waitFor(() => h.loop.state === 'idle', 3000, 'idle');
      const logged = h.log.filter((l) => / info .* -> /.test(l)).map((l) => /: (\w+ -> \w+) \(/.exec(l)?.[1]);
      assert.deepEqual(logged, h.changes);
      assert.equal(logged.length, 5);
      for (const l of h.log.filter((x) => / -> /.test(x))) assert.match(l, / t\/audioloop0: \w+ -> \w+ \(.+\)$/);
    });
  });

  describe('close', function () {
    it('is idempotent: shutdown twice, concurrently with the server closing: one closing, one idle', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write');
      const c = await startClient(h, ep);
      let destroyed = 0;
      ep.on('destroyed', () => destroyed++);
      const a = h.loop.shutdown();
      const b = h.loop.shutdown();
      prog.sock.destroy();
      await Promise.all([a, b, h.loop.shutdown()]);
      assert.equal(h.loop.state, 'idle');
      assert.deepEqual(h.changes, ['idle -> waiting', 'waiting -> running', 'running -> closing', 'closing -> idle']);
      assert.equal(destroyed, 1);
      assert.equal(c.state, 'ended', 'ended by the loop, never orphaned');
      await h.loop.shutdown(); // idle: nothing to do
      ep.destroy(); // the endpoint's destroy is idempotent too
      assert.equal(destroyed, 1);
    });

    it('a writing server with queued data gets exactly one RESET on shutdown, then EOF', async function () {
      const h = harness();
      const { prog, ep } = await open(h, 'OPEN mode=write');
      await startClient(h, ep);
      prog.sock.write(counterPcm('s16le', 2, 100000));
      await waitFor(() => ep.stats().fill === ep.stats().size, 3000, 'a full ring');
      await Promise.all([h.loop.shutdown(), h.loop.shutdown()]);
      await waitFor(() => prog.closed, 3000, 'the connection closed');
      assert.equal(prog.lines().filter((l) => l === 'RESET').length, 1);
      assert.equal(prog.lines().at(-1), 'RESET');
    });

    it('after closing, the loop serves a new server with a new node', async function () {
      const h = harness();
      const first = await open(h, 'OPEN mode=read');
      await h.loop.shutdown();
      assert.ok(first.ep.destroyed);
      const second = await open(h, 'OPEN mode=write format=u8 rate=8000 channels=1');
      assert.notEqual(second.ep, first.ep);
      assert.equal(second.ep.options.direction, 'source');
      await waitFor(() => second.prog.lines().length >= 1, 3000, 'OK');
      assert.equal(second.prog.lines()[0], 'OK instance=0 node=audioloop0 mode=write format=u8 rate=8000 channels=1 frame=1');
      await h.loop.shutdown();
      assert.deepEqual(h.changes.filter((c) => c === 'closing -> idle').length, 2);
    });
  });

  describe('through the daemon and the client library (memory backend)', function () {
    let backend: MemoryBackend;
    let daemon: Daemon;
    let dir: string;
    beforeEach(async function () {
      backend = new MemoryBackend({ quantum: 256 });
      dir = fs.mkdtempSync(path.join(tmp, 'd-'));
      daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 2 }, socketDir: dir, connect: () => backend, handshakeTimeoutMs: 500 });
      await daemon.start();
    });
    afterEach(async function () {
      backend.clock.halt();
      await daemon.stop();
    });

    it('queued writes are flushed with one ECONNRESET when the loop closes (daemon stop) before a client started', async function () {
      const srv = await openServer(0, { mode: 'write', socketDir: dir });
      const errors: Error[] = [];
      srv.writable.on('error', (e) => errors.push(e));
      const writes = [1, 2, 3].map(() => srv.write(Buffer.alloc(4096)));
      const settled = Promise.allSettled(writes);
      await waitFor(() => backend.endpoint('audioloop0'), 3000, 'the node');
      await daemon.stop();
      const results = await settled;
      const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as Error & { code?: string; errno?: number; syscall?: string }) : null));
      assert.ok(reasons.every((r) => r !== null), 'every queued write failed');
      for (const r of reasons) {
        assert.equal(r!.code, 'ECONNRESET');
        assert.equal(r!.errno, os.constants.errno.ECONNRESET);
        assert.equal(r!.syscall, 'write');
      }
      assert.ok(reasons.every((r) => r === srv.error), 'one and the same error for all');
      await sleep(50);
      assert.ok(errors.length <= 1, `at most one error event, got ${errors.length}`);
      await assert.rejects(srv.write(Buffer.alloc(4)), { code: 'ECONNRESET' });
      await srv.close();
      await srv.close();
    });

    it('read: the data played before the client left is read first, then ECONNRESET (every later read too)', async function () {
      const srv = await openServer(1, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: dir });
      const ep = await waitFor(() => backend.endpoint('audioloop1'), 3000, 'the node');
      const c = ep.connectClient({ appName: 'player', pid: 5 }).start();
      const client = await srv.waitForClient();
      assert.deepEqual(client, { app: 'player', pid: 5 });
      const pcm = counterPcm('s16le', 2, 3000);
      c.play(pcm);
      backend.clock.step(Math.ceil(3000 / 256));
      c.disconnect(); // the client leaves (a stop alone is a pause: the session stays)
      const got: Buffer[] = [];
      let err: (Error & { code?: string }) | null = null;
      for (;;) {
        try {
          got.push(await srv.read(5000));
        } catch (e) {
          err = e as Error;
          break;
        }
      }
      assert.ok(Buffer.concat(got).equals(pcm), `all ${pcm.length} bytes, got ${Buffer.concat(got).length}`);
      assert.equal(err?.code, 'ECONNRESET');
      await assert.rejects(srv.read(4), { code: 'ECONNRESET' });
      await waitFor(() => daemon.status().loops[1]!.state === 'idle', 3000, 'idle');
      await srv.close();
    });

    it('write: close() resolves only once the client has recorded everything (the ring is played out)', async function () {
      const srv = await openServer(0, { mode: 'write', format: 's16le', rate: 48000, channels: 2, socketDir: dir });
      const ep = await waitFor(() => backend.endpoint('audioloop0'), 3000, 'the node');
      const c = ep.connectClient({ appName: 'recorder' }).start();
      await srv.waitForClient();
      const pcm = counterPcm('s16le', 2, 48000); // 1 s: far more than the 200 ms ring
      await srv.write(pcm);
      backend.clock.run(2); // 256 frames every 2 ms: faster than real time
      await srv.close();
      const rec = c.recorded();
      assert.ok(rec.length >= pcm.length, `close() resolved after ${rec.length} of ${pcm.length} bytes were recorded`);
      assert.ok(rec.subarray(0, pcm.length).equals(pcm));
      await waitFor(() => daemon.status().loops[0]!.state === 'idle', 3000, 'idle');
    });

    it('EBUSY for a second server and EINVAL for read+write, through openServer', async function () {
      const first = await openServer(0, { mode: 'read', socketDir: dir, app: 'first' });
      await assert.rejects(openServer(0, { mode: 'write', socketDir: dir }), (e: Error & { code?: string; errno?: number; syscall?: string }) => {
        assert.equal(e.code, 'EBUSY');
        assert.equal(e.errno, os.constants.errno.EBUSY);
        assert.equal(e.syscall, 'open');
        assert.match(e.message, /already open by first/);
        return true;
      });
      await assert.rejects(openServer(0, { mode: 'readwrite', socketDir: dir }), { code: 'EINVAL' });
      await first.close();
      await waitFor(() => daemon.status().loops[0]!.state === 'idle', 3000, 'idle');
      const again = await openServer(0, { mode: 'write', socketDir: dir });
      assert.equal(again.mode, 'write');
      await again.close();
    });
  });
});
