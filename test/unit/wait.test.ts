/**
 * OPEN wait=MS (issue 13): the protocol field, the loop's TIMEOUT lines and
 * the client library's ETIMEDOUT, over the memory backend; the default (no
 * wait=) still waits forever.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBackend } from '../../src/backend/memory';
import { openServer, type LoopServer } from '../../src/client';
import { DEFAULT_CONFIG } from '../../src/config';
import { Daemon } from '../../src/daemon';
import { formatOpen, formatTimeout, parseOpen, parseTimeout, waitSecondsToMs, ProtocolError, type OpenRequest } from '../../src/protocol';
import { counterPcm } from '../helpers/pcm';
import { sleep, waitFor } from '../helpers/proc';

type CodedError = Error & { code?: string; errno?: number; syscall?: string };

describe('protocol: OPEN wait=MS', function () {
  it('takes an integer 1-86400000 ms; absent means wait forever', function () {
    assert.equal(parseOpen('OPEN mode=read wait=1').waitMs, 1);
    assert.equal(parseOpen('OPEN mode=write wait=2500').waitMs, 2500);
    assert.equal(parseOpen('OPEN mode=read wait=86400000').waitMs, 86400000);
    assert.equal('waitMs' in parseOpen('OPEN mode=read'), false);
  });

  it('refuses anything else with EINVAL naming the range; twice is EPROTO', function () {
    for (const v of ['0', '86400001', '-5', '1.5', 'abc', '', '0x10', '9999999999']) {
      assert.throws(
        () => parseOpen(`OPEN mode=read wait=${v}`),
        (e: ProtocolError) => e.code === 'EINVAL' && /wait must be an integer number of milliseconds, 1-86400000/.test(e.message),
        v,
      );
    }
    assert.throws(() => parseOpen('OPEN mode=read wait=5 wait=6'), (e: ProtocolError) => e.code === 'EPROTO');
  });

  it('formatOpen -> parseOpen keeps wait=; TIMEOUT lines round-trip; --wait SEC converts to ms', function () {
    const r: OpenRequest = { mode: 'write', format: 's16le', rate: 48000, channels: 2, nonblock: false, latencyMs: 10, waitMs: 750, app: 'x', pid: 3 };
    assert.deepEqual(parseOpen(formatOpen(r).slice(0, -1)), r);
    assert.equal(formatTimeout(750), 'TIMEOUT wait=750\n');
    assert.equal(parseTimeout('TIMEOUT wait=750'), 750);
    assert.equal(parseTimeout('TIMEOUT'), 0);
    for (const other of ['START', 'RESET', 'TIMEOUTX', 'TIMEOUT wait=', 'ERR ETIMEDOUT 110 x']) assert.equal(parseTimeout(other), null, other);
    assert.equal(waitSecondsToMs('2'), 2000);
    assert.equal(waitSecondsToMs('0.25'), 250);
    assert.equal(waitSecondsToMs('0.001'), 1);
    assert.equal(waitSecondsToMs('86400'), 86400000);
    for (const bad of ['0', '0.0004', '86400.001', '-1', '1e3', '.5', '']) assert.equal(waitSecondsToMs(bad), null, bad);
  });
});

describe('wait=MS over the daemon and the client library (memory backend)', function () {
  this.timeout(20000);
  let backend: MemoryBackend;
  let daemon: Daemon;
  let dir: string;
  const open: LoopServer[] = [];

  beforeEach(async function () {
    backend = new MemoryBackend({ quantum: 256 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-wait-'));
    daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 2 }, socketDir: dir, connect: () => backend, handshakeTimeoutMs: 500 });
    await daemon.start();
  });
  afterEach(async function () {
    for (const s of open.splice(0)) await s.close();
    backend.clock.halt();
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** a raw protocol connection: the lines the daemon sends */
  async function raw(line: string): Promise<{ sock: net.Socket; lines: () => string[] }> {
    const sock = net.connect(path.join(dir, 'audioloop0'));
    let data = '';
    sock.on('data', (c: Buffer) => (data += c.toString('latin1')));
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('connect', r));
    sock.write(line + '\n');
    return { sock, lines: () => data.split('\n').slice(0, -1) };
  }

  it('the daemon sends TIMEOUT wait=MS every MS until START, then never again; the connection stays open', async function () {
    const t0 = performance.now();
    const c = await raw('OPEN mode=read wait=100');
    await waitFor(() => c.lines().length >= 4, 3000, 'three TIMEOUT lines');
    const elapsed = performance.now() - t0;
    assert.deepEqual(c.lines().slice(1, 4), ['TIMEOUT wait=100', 'TIMEOUT wait=100', 'TIMEOUT wait=100']);
    assert.ok(elapsed >= 300, `three timeouts of 100 ms took ${elapsed.toFixed(0)} ms`);
    assert.equal(daemon.status().loops[0]!.state, 'waiting');
    assert.equal(daemon.status().loops[0]!.server?.waitMs, 100);
    const ep = await waitFor(() => backend.endpoint('audioloop0'), 3000, 'the node');
    ep.connectClient({ appName: 'paplay', pid: 9 }).start();
    await waitFor(() => c.lines().some((l) => l.startsWith('START')), 3000, 'START');
    const n = c.lines().length;
    const timeouts = daemon.status().loops[0]!.server!.timeouts;
    assert.ok(timeouts >= 3);
    await sleep(350);
    assert.equal(c.lines().length, n, 'no TIMEOUT after START');
    assert.equal(daemon.status().loops[0]!.server!.timeouts, timeouts);
    assert.equal(c.lines().filter((l) => l.startsWith('TIMEOUT')).length, timeouts);
    c.sock.destroy();
  });

  it('default (no wait=): nothing but OK for 2x a bound, the read still waits and then gets the client', async function () {
    const c = await raw('OPEN mode=read');
    await sleep(400);
    assert.deepEqual(c.lines().map((l) => l.split(' ')[0]), ['OK'], 'no TIMEOUT without wait=');
    c.sock.destroy();
    await waitFor(() => daemon.status().loops[0]!.state === 'idle', 3000, 'idle');

    const srv = await openServer(0, { mode: 'read', socketDir: dir });
    open.push(srv);
    let settled: unknown = 'pending';
    const reading = srv.read(4096).then(
      (b) => (settled = b),
      (e: Error) => (settled = e),
    );
    await sleep(400);
    assert.equal(settled, 'pending', 'without waitMs a read waits past 2x the bound used above');
    assert.equal(srv.timeouts, 0);
    const ep = backend.endpoint('audioloop0')!;
    const cl = ep.connectClient({ appName: 'player' }).start();
    const pcm = counterPcm('s16le', 2, 1024);
    cl.play(pcm);
    backend.clock.step(4);
    await reading;
    assert.ok(Buffer.isBuffer(settled) && pcm.subarray(0, 4096).equals(settled), 'the client data');
  });

  it('read(): ETIMEDOUT (errno, syscall) after the bound, the next read waits again and gets the client data', async function () {
    const t0 = performance.now();
    const srv = await openServer(0, { mode: 'read', waitMs: 150, socketDir: dir });
    open.push(srv);
    const events: CodedError[] = [];
    srv.on('timeout', (e: CodedError) => events.push(e));
    const e1 = (await srv.read(4096).catch((e: unknown) => e)) as CodedError;
    const elapsed = performance.now() - t0;
    assert.equal(e1.code, 'ETIMEDOUT');
    assert.equal(e1.errno, os.constants.errno.ETIMEDOUT);
    assert.equal(e1.syscall, 'read');
    assert.match(e1.message, /no client started within 150 ms/);
    assert.ok(elapsed >= 150 && elapsed < 1000, `timed out after ${elapsed.toFixed(0)} ms`);
    assert.equal(events.length, 1);
    // the next read waits again: a client starts within the next bound
    const next = srv.read(4096);
    const ep = backend.endpoint('audioloop0')!;
    await sleep(50);
    const c = ep.connectClient({ appName: 'player', pid: 5 }).start();
    const pcm = counterPcm('s16le', 2, 2048);
    c.play(pcm);
    backend.clock.step(8);
    const got = await next;
    assert.ok(pcm.subarray(0, 4096).equals(got), 'the same connection carries the client data');
    assert.deepEqual(srv.client, { app: 'player', pid: 5 });
  });

  it('a TIMEOUT with no read waiting fails the next read at once; several coalesce into one', async function () {
    const srv = await openServer(0, { mode: 'read', waitMs: 60, socketDir: dir });
    open.push(srv);
    await waitFor(() => srv.timeouts >= 3, 3000, 'three TIMEOUTs');
    const t = performance.now();
    await assert.rejects(srv.read(4096), { code: 'ETIMEDOUT' });
    assert.ok(performance.now() - t < 40, 'reported at once');
    // the next one waits for the next TIMEOUT (not the ones already reported)
    const n = srv.timeouts;
    await assert.rejects(srv.read(4096), { code: 'ETIMEDOUT' });
    assert.ok(srv.timeouts > n, 'the second read waited for a new TIMEOUT');
  });

  it('the stream surface: readable errors ETIMEDOUT and is replaced by a new stream on the same connection', async function () {
    const srv = await openServer(0, { mode: 'read', waitMs: 100, socketDir: dir });
    open.push(srv);
    const first = srv.readable;
    const err = await new Promise<CodedError>((r) => first.once('error', r));
    assert.equal(err.code, 'ETIMEDOUT');
    assert.equal(err.syscall, 'read');
    assert.ok(first.destroyed);
    assert.equal(srv.error, null, 'not the end of the loop');
    const second = srv.readable;
    assert.notEqual(second, first);
    const ep = backend.endpoint('audioloop0')!;
    const c = ep.connectClient({ appName: 'player' }).start();
    const pcm = counterPcm('s16le', 2, 1024);
    c.play(pcm);
    backend.clock.step(4);
    const chunks: Buffer[] = [];
    for await (const ch of second) {
      chunks.push(ch as Buffer);
      if (Buffer.concat(chunks).length >= pcm.length) break;
    }
    assert.ok(Buffer.concat(chunks).subarray(0, pcm.length).equals(pcm));
  });

  it('write(): ETIMEDOUT with nothing sent; after a client starts the next write is recorded byte-exact', async function () {
    const t0 = performance.now();
    const srv = await openServer(1, { mode: 'write', waitMs: 120, socketDir: dir });
    open.push(srv);
    const early = counterPcm('s16le', 2, 256, 50000);
    const e = (await srv.write(early).catch((x: unknown) => x)) as CodedError;
    assert.equal(e.code, 'ETIMEDOUT');
    assert.equal(e.errno, os.constants.errno.ETIMEDOUT);
    assert.equal(e.syscall, 'write');
    assert.ok(performance.now() - t0 >= 120);
    const ep = backend.endpoint('audioloop1')!;
    const c = ep.connectClient({ appName: 'recorder' }).start();
    await srv.waitForClient();
    const pcm = counterPcm('s16le', 2, 2048);
    await srv.write(pcm);
    // all of it in the ring before the graph runs (else the test itself underruns the source)
    await waitFor(() => daemon.status().loops[1]!.bytes === pcm.length, 3000, 'the data in the ring');
    const deadline = Date.now() + 5000;
    while (c.recorded().length < pcm.length) {
      assert.ok(Date.now() < deadline, `recorded ${c.recorded().length}`);
      backend.clock.step();
      await sleep(2);
    }
    const rec = c.recorded();
    const at = rec.indexOf(pcm.subarray(0, 64));
    assert.ok(at >= 0 && rec.subarray(0, at).every((b) => b === 0), `silence, then the data (at ${at})`);
    assert.ok(rec.subarray(at, at + pcm.length).equals(pcm), "what was written after START, nothing of the timed-out write");
  });

  it('the writable surface errors ETIMEDOUT (its queued data dropped) and srv.writable is a new stream', async function () {
    const srv = await openServer(1, { mode: 'write', waitMs: 100, socketDir: dir });
    open.push(srv);
    const w = srv.writable;
    w.write(Buffer.alloc(4096));
    const err = await new Promise<CodedError>((r) => w.once('error', r));
    assert.equal(err.code, 'ETIMEDOUT');
    assert.equal(srv.error, null);
    assert.notEqual(srv.writable, w);
    assert.equal(srv.writable.destroyed, false);
  });

  it('openServer refuses a bad waitMs with EINVAL', async function () {
    for (const waitMs of [0, -1, 1.5, 86400001]) {
      await assert.rejects(openServer(0, { mode: 'read', waitMs, socketDir: dir }), (e: CodedError) => e.code === 'EINVAL' && e.syscall === 'open' && /waitMs/.test(e.message));
    }
  });
});
