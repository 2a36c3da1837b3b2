/**
 * The backend contract, written once: what every sound-server backend
 * (src/backend/types.ts) must do, checked through the daemon and the client
 * library exactly as a server program sees it, with a client of that sound
 * server driving the far end. It runs against
 *  - the memory backend with a simulated client (test/unit/backend-contract.test.ts),
 *  - a real headless PipeWire and a real PulseAudio with real paplay/parecord
 *    clients (test/integration/backend-contract.test.ts, once per sound
 *    server: scripts/test.sh runs the integration pass on each).
 *
 * Each target gives a backend factory and a ClientDriver. Nothing here
 * knows which backend it tests.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer, type ClientStart, type LoopServer } from '../../src/client';
import { DEFAULT_CONFIG } from '../../src/config';
import { fetchStatus } from '../../src/control';
import { Daemon } from '../../src/daemon';
import type { AudioloopError } from '../../src/errors';
import { frameBytes, type PcmFormat, type SampleFormat } from '../../src/format';
import { createLogger } from '../../src/log';
import type { LoopStatus } from '../../src/loop';
import type { Backend, Endpoint, EndpointOptions } from '../../src/backend/types';
import { checkCounter, counterPcm } from '../helpers/pcm';
import { sleep, waitFor } from '../helpers/proc';

/** A device on the sound server as a client sees it (pactl list short sinks/sources). */
export interface Device {
  name: string;
  direction: 'sink' | 'source';
  /** as PulseAudio prints it: "s16le 2ch 48000Hz" */
  spec: string;
}

export interface ClientEnd {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/** A client application stream the driver started. */
export interface ClientRun {
  /** the application name the sound server reports for it (START names it) */
  readonly app: string;
  readonly done: Promise<ClientEnd>;
  /** the application closes its stream (SIGINT for a real program) */
  stop(): void;
}

export interface RecorderRun extends ClientRun {
  /** everything recorded so far, in the format asked for */
  data(): Buffer;
}

/** Starts and stops real (or, on the memory backend, simulated) clients of the sound server. */
export interface ClientDriver {
  /** sinks and sources now, monitors excluded */
  devices(): Promise<Device[]>;
  /** application streams on the sound server now, on any device (never the daemon's own) */
  streams(): Promise<{ playing: number; recording: number }>;
  /** plays pcm (exactly fmt) into `node` and ends by itself when it has played it all */
  play(node: string, fmt: PcmFormat, pcm: Buffer): ClientRun;
  /** records from `node` in fmt until stopped (or until its stream is ended) */
  record(node: string, fmt: PcmFormat): RecorderRun;
}

export interface ContractTarget {
  /** the backend the daemon uses; called again after the sound server was lost */
  connect(): Backend;
  driver: ClientDriver;
}

export interface ContractSetup {
  /** e.g. "memory", "pipewire", "pulseaudio" */
  name: string;
  /** once before the suite (may skip it); returns the target */
  prepare(this: Mocha.Context): ContractTarget | Promise<ContractTarget>;
  /** once after the suite */
  finish?(): void | Promise<void>;
}

export function pulseFormat(f: SampleFormat): string {
  return f === 'f32le' ? 'float32le' : f;
}

export function pulseSpec(f: PcmFormat): string {
  return `${pulseFormat(f.format)} ${f.channels}ch ${f.rate}Hz`;
}

const NODE = 'audioloop0';
const S16: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };

/** Settles within `ms`? */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = Date.now() + ms;
  while (!settled && Date.now() < deadline) await sleep(20);
  return settled;
}

interface Collected {
  data: () => Buffer;
  bytes: () => number;
  ended: Promise<{ err: AudioloopError | null; bytesBefore: number }>;
}

function collect(srv: LoopServer): Collected {
  const chunks: Buffer[] = [];
  let n = 0;
  srv.readable.on('data', (c: Buffer) => {
    chunks.push(c);
    n += c.length;
  });
  const ended = new Promise<{ err: AudioloopError | null; bytesBefore: number }>((resolve) => {
    srv.readable.once('error', (e: AudioloopError) => resolve({ err: e, bytesBefore: n }));
    srv.readable.once('end', () => resolve({ err: null, bytesBefore: n }));
  });
  return { data: () => Buffer.concat(chunks), bytes: () => n, ended };
}

async function writeCounter(srv: LoopServer, frames?: number): Promise<{ frames: number; err: AudioloopError | null }> {
  const f = srv.format;
  const chunk = Math.floor(f.rate / 50);
  let written = 0;
  for (;;) {
    if (frames !== undefined && written >= frames) return { frames: written, err: null };
    const n = frames !== undefined ? Math.min(chunk, frames - written) : chunk;
    try {
      await srv.write(counterPcm(f.format, f.channels, n, written));
    } catch (e) {
      return { frames: written, err: e as AudioloopError };
    }
    written += n;
  }
}

/** Defines the contract suite for one backend. */
export function backendContract(setup: ContractSetup): void {
  describe(`backend contract: ${setup.name}`, function () {
    this.timeout(60000);
    let target: ContractTarget;
    let driver: ClientDriver;
    let tmp = '';
    let dir = '';
    let daemon: Daemon | null = null;
    let logLines: string[] = [];
    const servers: LoopServer[] = [];
    const runs: ClientRun[] = [];

    before(async function () {
      target = await setup.prepare.call(this);
      driver = target.driver;
    });
    after(async () => {
      await setup.finish?.();
    });
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-contract-'));
      dir = path.join(tmp, 'sock');
      logLines = [];
    });
    afterEach(async function () {
      for (const s of servers.splice(0)) await s.close().catch(() => undefined);
      if (daemon) await daemon.stop();
      daemon = null;
      for (const r of runs.splice(0)) {
        r.stop();
        await r.done;
      }
      if (this.currentTest?.state === 'failed' && logLines.length) {
        process.stderr.write(`--- daemon log of "${this.currentTest.title}":\n${logLines.join('\n')}\n`);
      }
      // every test leaves the sound server as it found it
      if (driver) await waitFor(async () => !(await driver.devices()).some((d) => d.name === NODE), 5000, `${NODE} to go`);
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    /* a 1 s ring: a stall of this (busy, shared) process must not become an xrun where data is checked */
    async function startDaemon(bufferMs = 1000): Promise<void> {
      daemon = new Daemon({
        config: { ...DEFAULT_CONFIG, audioloopInstances: 1, bufferMs, logLevel: 'debug' },
        socketDir: dir,
        connect: () => target.connect(),
        log: createLogger('debug', 'audioloop', (l) => logLines.push(l)),
      });
      await daemon.start();
    }

    async function open(mode: 'read' | 'write', fmt: PcmFormat = S16, app = 'contract', clock = false): Promise<LoopServer> {
      const srv = await openServer(0, { mode, socketDir: dir, app, ...fmt, ...(clock ? { clock } : {}) });
      servers.push(srv);
      return srv;
    }

    async function status(): Promise<LoopStatus> {
      const l = (await fetchStatus(dir)).loops.find((x) => x.instance === 0);
      assert.ok(l, 'loop 0 in STATUS');
      return l;
    }

    function play(fmt: PcmFormat, pcm: Buffer): ClientRun {
      const r = driver.play(NODE, fmt, pcm);
      runs.push(r);
      return r;
    }

    function record(fmt: PcmFormat): RecorderRun {
      const r = driver.record(NODE, fmt);
      runs.push(r);
      return r;
    }

    const ours = async (): Promise<Device[]> => (await driver.devices()).filter((d) => d.name === NODE);

    describe('the node exists only while a server holds the server end, with its exact format and direction', function () {
      it('no node while no server is open; a player aimed at it is refused', async () => {
        await startDaemon();
        assert.deepEqual(await ours(), []);
        const p = play(S16, counterPcm('s16le', 2, 48000 * 5));
        const end = await p.done;
        assert.notEqual(end.code, 0, `the player fails: ${JSON.stringify(end)}`);
        assert.equal(end.signal, null, 'by itself, at once');
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 0 }, 'its stream went to no other device');
        const st = await status();
        assert.equal(st.state, 'idle');
        assert.equal(st.bytes, 0);
      });

      for (const fmt of [
        { format: 's16le', rate: 48000, channels: 2 },
        { format: 'f32le', rate: 44100, channels: 1 },
        { format: 's24le', rate: 96000, channels: 6 },
        { format: 'u8', rate: 8000, channels: 1 },
        { format: 's32le', rate: 192000, channels: 8 },
      ] as PcmFormat[]) {
        it(`read ${pulseSpec(fmt)}: a sink with exactly that format (not a source) until the server closes`, async () => {
          await startDaemon();
          const srv = await open('read', fmt);
          assert.deepEqual(srv.format, fmt);
          const dev = await waitFor(async () => (await ours()).find((d) => d.direction === 'sink'), 5000, 'the sink');
          assert.equal(dev.spec, pulseSpec(fmt));
          assert.deepEqual((await ours()).map((d) => d.direction), ['sink'], 'a sink only');
          assert.equal((await status()).state, 'waiting');
          await srv.close();
          await waitFor(async () => (await ours()).length === 0, 5000, 'the sink to go');
          await waitFor(async () => (await status()).state === 'idle', 5000, 'idle');
        });
      }

      for (const fmt of [
        { format: 's16le', rate: 48000, channels: 2 },
        { format: 'f32le', rate: 44100, channels: 1 },
        { format: 's24le', rate: 96000, channels: 6 },
      ] as PcmFormat[]) {
        it(`write ${pulseSpec(fmt)}: a source with exactly that format (not a sink) until the server closes`, async () => {
          await startDaemon();
          const srv = await open('write', fmt);
          const dev = await waitFor(async () => (await ours()).find((d) => d.direction === 'source'), 5000, 'the source');
          assert.equal(dev.spec, pulseSpec(fmt));
          assert.deepEqual((await ours()).map((d) => d.direction), ['source'], 'a source only');
          await srv.close();
          await waitFor(async () => (await ours()).length === 0, 5000, 'the source to go');
        });
      }
    });

    describe('START gating and ECONNRESET after everything in flight', function () {
      it('read: no START and no data without a client; a player starts: START names it, every frame arrives unchanged, then ECONNRESET', async () => {
        await startDaemon();
        const srv = await open('read');
        const first = srv.read(4096);
        first.catch(() => undefined);
        assert.equal(await settlesWithin(first, 1000), false, 'the first read waits');
        assert.equal(srv.client, null, 'no START');
        assert.equal((await status()).bytes, 0);
        const frames = 48000;
        const p = play(S16, counterPcm('s16le', 2, frames));
        const parts = [await first];
        assert.equal(parts[0]!.length, 4096, 'a blocking read of the size asked');
        assert.equal((srv.client as ClientStart | null)?.app, p.app, 'START came first and names the client');
        assert.equal((await status()).state, 'running');
        let err: AudioloopError | null = null;
        while (!err) {
          try {
            parts.push(await srv.read(16384));
          } catch (e) {
            err = e as AudioloopError;
          }
        }
        assert.equal((await p.done).code, 0, 'the player finished normally');
        assert.equal(err.code, 'ECONNRESET');
        assert.equal(err.errno, os.constants.errno.ECONNRESET);
        assert.equal(err.syscall, 'read');
        const c = checkCounter(Buffer.concat(parts), 's16le', 2);
        assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], JSON.stringify(c));
        await assert.rejects(srv.read(4096), { code: 'ECONNRESET' });
        await waitFor(async () => (await status()).state === 'idle', 5000, 'idle');
      });

      for (const fmt of [
        { format: 'f32le', rate: 48000, channels: 1 },
        { format: 's24le', rate: 48000, channels: 2 },
      ] as PcmFormat[]) {
        it(`read ${pulseSpec(fmt)}: every frame the player played, bit-exact, then ECONNRESET`, async () => {
          await startDaemon();
          const srv = await open('read', fmt);
          const got = collect(srv);
          const frames = 36000;
          const p = play(fmt, counterPcm(fmt.format, fmt.channels, frames));
          const end = await got.ended;
          assert.equal((await p.done).code, 0);
          assert.equal(end.err?.code, 'ECONNRESET');
          const data = got.data();
          const c = checkCounter(data, fmt.format, fmt.channels);
          assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], JSON.stringify(c));
          assert.equal(c.lead + c.frames + c.tail, data.length / frameBytes(fmt), 'whole frames');
        });
      }

      for (const fmt of [
        { format: 's16le', rate: 48000, channels: 2 },
        { format: 'f32le', rate: 48000, channels: 1 },
      ] as PcmFormat[]) {
        it(`write ${pulseSpec(fmt)}: writes wait for a client; a recorder starts: START names it, it records exactly what was written`, async () => {
          await startDaemon();
          const srv = await open('write', fmt);
          const w = srv.write(counterPcm(fmt.format, fmt.channels, 4800));
          w.catch(() => undefined);
          assert.equal(await settlesWithin(w, 1000), false, 'the first write waits for a client');
          const st = await status();
          assert.deepEqual([st.state, st.bytes, st.fill, srv.client], ['waiting', 0, 0, null], 'nothing reached the node');
          const r = record(fmt);
          await w;
          assert.equal((srv.client as ClientStart | null)?.app, r.app, 'START names the recorder');
          // the counter continues after the first 4800 frames
          const frames = fmt.rate;
          for (let done = 4800; done < frames; done += 4800) await srv.write(counterPcm(fmt.format, fmt.channels, 4800, done));
          await waitFor(() => checkCounter(r.data(), fmt.format, fmt.channels).tail > 0, 10000, 'the recorder to have it all');
          const c = checkCounter(r.data(), fmt.format, fmt.channels);
          assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], JSON.stringify(c));
        });
      }

      it("write: the recorder goes away: the server's next writes fail with ECONNRESET", async () => {
        await startDaemon();
        const srv = await open('write');
        const writing = writeCounter(srv);
        const r = record(S16);
        await srv.waitForClient();
        await waitFor(async () => (await status()).bytes > 48000 * 4 / 2, 10000, 'half a second to flow');
        r.stop();
        await r.done;
        assert.equal(await settlesWithin(writing, 5000), true, 'the writer learns within 5 s');
        const res = await writing;
        assert.equal(res.err?.code, 'ECONNRESET');
        assert.equal(res.err?.errno, os.constants.errno.ECONNRESET);
        assert.equal(res.err?.syscall, 'write');
        await assert.rejects(srv.write(counterPcm('s16le', 2, 10)), { code: 'ECONNRESET' });
        await waitFor(async () => (await status()).state === 'idle', 5000, 'idle');
      });
    });

    describe('clock=1: the loop\'s clock runs until a client starts', function () {
      it('read: silence at once, no START; a player starts: START names it, after the silence every frame unchanged, then ECONNRESET', async () => {
        await startDaemon();
        const srv = await open('read', S16, 'contract', true);
        const got = collect(srv);
        await waitFor(() => got.bytes() >= 48000 * 4 * 0.3, 5000, '0.3 s of silence');
        assert.equal(srv.client, null, 'no START');
        assert.ok(got.data().every((b) => b === 0), 'silence');
        const st = await status();
        assert.deepEqual([st.state, st.bytes, st.clock?.running], ['waiting', 0, true]);
        const frames = 36000;
        const p = play(S16, counterPcm('s16le', 2, frames));
        const end = await got.ended;
        assert.equal((await p.done).code, 0);
        assert.equal(end.err?.code, 'ECONNRESET');
        assert.equal((srv.client as ClientStart | null)?.app, p.app, 'START names the player');
        const data = got.data();
        assert.ok(data.subarray(0, srv.silenceFrames * 4).every((b) => b === 0), 'the SILENCE frames are silence');
        const c = checkCounter(data.subarray(srv.silenceFrames * 4), 's16le', 2);
        assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], JSON.stringify(c));
      });

      it('write: writes go through with no client and are consumed; a recorder starts: it records from the first frame not consumed, every frame in order', async () => {
        await startDaemon();
        const srv = await open('write', S16, 'contract', true);
        // real time, 100 ms ahead, for 1 s: nothing holds the writer
        const t0 = performance.now();
        let written = 0;
        while (performance.now() - t0 < 1000) {
          const due = Math.floor(((performance.now() - t0 + 100) * 48000) / 1000);
          if (due > written) {
            await srv.write(counterPcm('s16le', 2, due - written, written));
            written = due;
          }
          await sleep(20);
        }
        const before = await status();
        assert.deepEqual([before.state, before.bytes, srv.client], ['waiting', 0, null]);
        assert.ok(before.clock!.consumedBytes >= 48000 * 4 * 0.7, `consumed ${before.clock!.consumedBytes}`);
        const r = record(S16);
        await srv.waitForClient();
        assert.equal((srv.client as ClientStart | null)?.app, r.app, 'START names the recorder');
        const more = 48000;
        await srv.write(counterPcm('s16le', 2, more, written));
        written += more;
        const st = await status();
        assert.equal(st.clock?.running, false);
        const consumed = st.clock!.consumedBytes / 4;
        await waitFor(() => checkCounter(r.data(), 's16le', 2).tail > 0, 10000, 'the recorder to have it all');
        const c = checkCounter(r.data(), 's16le', 2);
        assert.deepEqual([c.first, c.frames, c.bad], [consumed % 30000, written - consumed, 0], JSON.stringify(c));
      });
    });

    describe('EBUSY', function () {
      it('a second server on the instance is EBUSY (naming the first) while the first works on', async () => {
        await startDaemon();
        const first = await open('read', S16, 'first-server');
        const got = collect(first);
        for (const mode of ['read', 'write'] as const) {
          await assert.rejects(openServer(0, { mode, socketDir: dir, app: 'intruder' }), (e: AudioloopError) => {
            assert.equal(e.code, 'EBUSY');
            assert.equal(e.errno, os.constants.errno.EBUSY);
            assert.match(e.message, /already open by first-server \(pid \d+\), mode=read/);
            return true;
          });
        }
        assert.equal((await ours()).length, 1, 'still one node');
        const frames = 24000;
        const p = play(S16, counterPcm('s16le', 2, frames));
        const end = await got.ended;
        assert.equal((await p.done).code, 0);
        assert.equal(end.err?.code, 'ECONNRESET');
        const c = checkCounter(got.data(), 's16le', 2);
        assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], JSON.stringify(c));
      });
    });

    describe('the server closes: client streams are ended, not moved', function () {
      it('a player ends by itself soon after the server closes; its stream is on no other device', async () => {
        await startDaemon();
        const srv = await open('read');
        const got = collect(srv);
        const p = play(S16, counterPcm('s16le', 2, 48000 * 30));
        await srv.waitForClient();
        await waitFor(() => got.bytes() > 48000 * 4 / 4, 10000, 'data to flow');
        assert.deepEqual(await driver.streams(), { playing: 1, recording: 0 });
        await srv.close();
        assert.ok(await settlesWithin(p.done, 5000), 'the player ended within 5 s');
        assert.equal((await p.done).signal, null, 'by itself');
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 0 }, 'no stream left anywhere');
        await sleep(300);
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 0 }, 'and none comes back');
        assert.deepEqual(await ours(), []);
      });

      it('a recorder ends by itself soon after the server closes; its stream is on no other device', async () => {
        await startDaemon();
        const srv = await open('write');
        const r = record(S16);
        const writing = writeCounter(srv, 48000 * 2);
        await srv.waitForClient();
        await waitFor(async () => (await status()).bytes > 48000 * 4 / 4, 10000, 'data to flow');
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 1 });
        await writing;
        await srv.close();
        assert.ok(await settlesWithin(r.done, 5000), 'the recorder ended within 5 s');
        assert.equal((await r.done).signal, null, 'by itself');
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 0 }, 'no stream left anywhere');
        await sleep(300);
        assert.deepEqual(await driver.streams(), { playing: 0, recording: 0 }, 'and none comes back');
        assert.deepEqual(await ours(), []);
      });
    });

    describe('xruns and bounded memory', function () {
      it('a server that does not read: xruns counted, the ring never over its size, every frame delivered in order or counted as dropped', async () => {
        await startDaemon(200);
        const fmt: PcmFormat = { format: 's32le', rate: 48000, channels: 2 }; // a counter that does not wrap
        const srv = await open('read', fmt);
        const frames = 48000 * 2;
        const p = play(fmt, counterPcm('s32le', 2, frames));
        let maxFill = 0;
        let maxQueued = 0;
        let size = 0;
        let finished = false;
        void p.done.then(() => (finished = true));
        while (!finished) {
          const st = await status();
          maxFill = Math.max(maxFill, st.fill);
          maxQueued = Math.max(maxQueued, st.queued);
          size = st.size || size;
          await sleep(50);
        }
        assert.equal((await p.done).code, 0);
        const st = await status();
        assert.ok(st.xruns > 0 && st.xrunBytes > 0, `xruns counted: ${JSON.stringify(st)}`);
        assert.ok(size > 0 && maxFill <= size, `the ring never holds more than its size (${maxFill} <= ${size})`);
        assert.ok(maxQueued <= 1 << 16, `the daemon queues little beyond the ring: ${maxQueued}`);
        const got = collect(srv);
        const end = await got.ended;
        assert.equal(end.err?.code, 'ECONNRESET');
        const data = got.data();
        const fb = frameBytes(fmt);
        let delivered = 0;
        let last = -1;
        for (let i = 0; i < data.length / fb; i++) {
          const v = data.readInt32LE(i * fb) / 256;
          if (v === 0) continue;
          assert.ok(v - 1 > last, `frames in order, no duplicate (frame ${i}: ${v - 1} after ${last})`);
          last = v - 1;
          delivered++;
        }
        assert.ok(delivered > 0 && delivered < frames, `some kept, some dropped: ${delivered} of ${frames}`);
        assert.ok(delivered + st.xrunBytes / fb >= frames, `delivered (${delivered}) + dropped (${st.xrunBytes / fb}) >= ${frames}`);
      });

      it('a server writing as fast as it can is held to the client rate: ring and daemon queue bounded', async () => {
        await startDaemon(200);
        const srv = await open('write');
        const r = record(S16);
        await srv.waitForClient();
        const t0 = Date.now();
        let written = 0;
        let maxFill = 0;
        let maxQueued = 0;
        let size = 0;
        const chunk = counterPcm('s16le', 2, 4800);
        let lastPoll = 0;
        while (Date.now() - t0 < 2000) {
          await srv.write(chunk);
          written += chunk.length;
          if (Date.now() - lastPoll > 100) {
            lastPoll = Date.now();
            const st = await status();
            maxFill = Math.max(maxFill, st.fill);
            maxQueued = Math.max(maxQueued, st.queued);
            size = st.size || size;
          }
        }
        const secs = (Date.now() - t0) / 1000;
        assert.ok(written <= secs * 48000 * 4 + (2 << 20), `held to about real time: ${written} bytes in ${secs.toFixed(1)} s`);
        assert.ok(size > 0 && maxFill <= size, `ring ${maxFill} <= ${size}`);
        assert.ok(maxQueued <= 1 << 17, `queued in the daemon: ${maxQueued}`);
        r.stop();
      });
    });

    describe('endpoint errors (the Backend directly)', function () {
      let backend: Backend | null = null;
      const eps: Endpoint[] = [];
      afterEach(() => {
        for (const ep of eps.splice(0)) ep.destroy();
        backend?.close();
        backend = null;
      });
      const o = (over: Partial<EndpointOptions> = {}): EndpointOptions => ({
        direction: 'sink',
        name: `audioloop_contract_${process.pid}`,
        description: 'contract',
        format: 's16le',
        rate: 48000,
        channels: 2,
        ringBytes: 1 << 16,
        ...over,
      });

      it('bad formats are EINVAL; read on a source and write on a sink EINVAL; EBADF after destroy; destroy is idempotent', () => {
        backend = target.connect();
        assert.equal(backend.connected, true);
        assert.throws(() => backend!.createEndpoint(o({ rate: 1000 })), { code: 'EINVAL' });
        assert.throws(() => backend!.createEndpoint(o({ channels: 9 })), { code: 'EINVAL' });
        assert.throws(() => backend!.createEndpoint(o({ format: 'mp3' as SampleFormat })), { code: 'EINVAL' });
        const sink = backend.createEndpoint(o());
        const src = backend.createEndpoint(o({ direction: 'source', name: `audioloop_contract_src_${process.pid}` }));
        eps.push(sink, src);
        assert.throws(() => src.read(Buffer.alloc(4)), { code: 'EINVAL' });
        assert.throws(() => sink.write(Buffer.alloc(4)), { code: 'EINVAL' });
        assert.ok(sink.stats().size >= 1 << 16, `the ring holds what was asked: ${sink.stats().size}`);
        sink.destroy();
        sink.destroy();
        assert.equal(sink.destroyed, true);
        assert.throws(() => sink.read(Buffer.alloc(4)), { code: 'EBADF' });
        assert.equal(src.write(Buffer.alloc(10)), 8, 'whole frames only');
        backend.close();
        backend.close();
        assert.throws(() => backend!.createEndpoint(o()), { code: 'EBADF' });
      });
    });
  });
}
