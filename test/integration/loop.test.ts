/**
 * Issue 3: the loop's semantics, end to end. A real daemon (in-process
 * `Daemon`, or the CLI as a tracked process) over the real headless
 * PipeWire, a real server end (`openServer` or the raw socket protocol) and
 * real clients (paplay, parecord, pw-play, pw-record, pactl). Nothing is
 * mocked. Each test gets its own socket directory and daemon.
 *
 * The same file runs on a real PulseAudio with the PulseAudio backend
 * (AUDIOLOOP_TEST_SOUNDSERVER=pulseaudio, scripts/test.sh's second pass):
 * there the clients are paplay/parecord only (pw-play/pw-record need
 * PipeWire), and the daemon's own streams and module-remap-source's are
 * not counted as client streams.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Daemon } from '../../src/daemon';
import { openServer, type ClientStart, type LoopServer } from '../../src/client';
import { createLogger } from '../../src/log';
import { DEFAULT_CONFIG } from '../../src/config';
import type { AudioloopError } from '../../src/errors';
import type { LoopStatus } from '../../src/loop';
import { frameBytes, type PcmFormat, type SampleFormat } from '../../src/format';
import { wavHeader } from '../../src/wav';
import { onPulseAudio, requireSoundServer, soundServerTitle, suiteBackend } from '../helpers/soundserver';
import { clientStreamCount } from '../contract/pulse-driver';
import { run, sleep, spawnTracked, stopTracked, waitFor } from '../helpers/proc';
import { checkCounter, counterPcm } from '../helpers/pcm';
import { fetchStatus } from '../../src/control';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const NODE = 'audioloop0';

type Row = string[];

async function pactlShort(kind: 'sinks' | 'sources' | 'sink-inputs' | 'source-outputs'): Promise<Row[]> {
  const r = await run('pactl', ['list', 'short', kind]);
  assert.equal(r.code, 0, `pactl list short ${kind}: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'));
}

/** pactl names a format the way PulseAudio does */
function pulseFormat(f: SampleFormat): string {
  return f === 'f32le' ? 'float32le' : f;
}

function pulseSpec(f: PcmFormat): string {
  return `${pulseFormat(f.format)} ${f.channels}ch ${f.rate}Hz`;
}

function rawArgs(f: PcmFormat): string[] {
  return ['--raw', `--format=${pulseFormat(f.format)}`, `--rate=${f.rate}`, `--channels=${f.channels}`];
}


async function loopStatus(dir: string, instance = 0): Promise<LoopStatus> {
  const st = await fetchStatus(dir);
  const l = st.loops.find((x) => x.instance === instance);
  assert.ok(l, `loop ${instance} in STATUS`);
  return l;
}

/** What a read-mode server received, and how its stream ended. */
interface Collected {
  data: () => Buffer;
  bytes: () => number;
  /** resolves with the stream's error (ECONNRESET expected) and the byte count seen before it */
  ended: Promise<{ err: AudioloopError | null; bytesBefore: number }>;
}

function collect(srv: LoopServer): Collected {
  const chunks: Buffer[] = [];
  let n = 0;
  const r = srv.readable;
  r.on('data', (c: Buffer) => {
    chunks.push(c);
    n += c.length;
  });
  const ended = new Promise<{ err: AudioloopError | null; bytesBefore: number }>((resolve) => {
    r.once('error', (e: AudioloopError) => resolve({ err: e, bytesBefore: n }));
    r.once('end', () => resolve({ err: null, bytesBefore: n }));
  });
  return { data: () => Buffer.concat(chunks), bytes: () => n, ended };
}

/** Writes a counter pattern through srv.write() until it fails (or `frames` are written). */
async function writeCounter(srv: LoopServer, opts: { frames?: number; chunkFrames?: number } = {}): Promise<{ frames: number; err: AudioloopError | null }> {
  const f = srv.format;
  const chunk = opts.chunkFrames ?? Math.floor(f.rate / 50);
  let written = 0;
  for (;;) {
    if (opts.frames !== undefined && written >= opts.frames) return { frames: written, err: null };
    const n = opts.frames !== undefined ? Math.min(chunk, opts.frames - written) : chunk;
    try {
      await srv.write(counterPcm(f.format, f.channels, n, written));
    } catch (e) {
      return { frames: written, err: e as AudioloopError };
    }
    written += n;
  }
}

/** Settles within `ms`? (true if settled) */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = Date.now() + ms;
  while (!settled && Date.now() < deadline) await sleep(25);
  return settled;
}

function procRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS in /proc/PID/status');
  return Number(m[1]);
}

/** pw-play/pw-record are PipeWire's own clients: they run on the PipeWire pass only */
const PW_TOO = <T extends string>(pulse: T, pw: T): T[] => (onPulseAudio() ? [pulse] : [pulse, pw]);

describe(`loop semantics (issue 3): real daemon, real ${soundServerTitle()}, real clients`, function () {
  this.timeout(60000);
  let tmp: string;
  let dir: string;
  let daemon: Daemon | null = null;
  let logLines: string[] = [];
  const servers: LoopServer[] = [];

  before(requireSoundServer);
  beforeEach(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-loop-'));
    dir = path.join(tmp, 'sock');
    logLines = [];
  });
  afterEach(async function () {
    for (const s of servers.splice(0)) await s.close().catch(() => undefined);
    if (daemon) await daemon.stop();
    daemon = null;
    if (this.currentTest?.state === 'failed' && logLines.length) {
      process.stderr.write(`--- daemon log of "${this.currentTest.title}":\n${logLines.join('\n')}\n`);
    }
    // every test must leave the sound server as it found it
    await waitFor(async () => !(await pactlShort('sinks')).some((r) => r[1] === NODE), 5000, `${NODE} to leave the sinks`);
    await waitFor(async () => !(await pactlShort('sources')).some((r) => r[1] === NODE), 5000, `${NODE} to leave the sources`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /*
   * The in-process daemon shares this process's event loop with the test and
   * the machine is busy: a 1 s ring keeps a stall of the test process from
   * turning into an xrun in tests about data exactness. The xrun tests use
   * the default 200 ms.
   */
  async function startDaemon(instances = 1, bufferMs = 1000): Promise<Daemon> {
    const log = createLogger('debug', 'audioloop', (l) => logLines.push(l));
    daemon = new Daemon({
      config: { ...DEFAULT_CONFIG, audioloopInstances: instances, bufferMs, logLevel: 'debug' },
      socketDir: dir,
      connect: () => suiteBackend('audioloop-test-daemon'),
      log,
    });
    await daemon.start();
    return daemon;
  }

  async function open(mode: 'read' | 'write', fmt: Partial<PcmFormat> & { nonblock?: boolean } = {}): Promise<LoopServer> {
    const srv = await openServer(0, { mode, socketDir: dir, app: 'loop-test', ...fmt });
    servers.push(srv);
    return srv;
  }

  function writeFile(name: string, buf: Buffer): string {
    const file = path.join(tmp, name);
    fs.writeFileSync(file, buf);
    return file;
  }

  // ---------------------------------------------------------------- 1
  describe('1. the client node exists only while a server holds the server end', function () {
    /*
     * Server-first order for clients: pipewire-pulse does not check the
     * device name (it sets target.object) and WirePlumber 0.4.13 would link
     * the stream to the default sink. audioloop's WirePlumber rule
     * (conf/wireplumber/audioloop-clients.lua, installed by soundserver.sh and
     * setup.sh) ends such a stream before it is linked: paplay fails like an
     * open() of the OSS client device without a server. What reaches the
     * default sink is measured in server-first.test.ts.
     */
    it('no audioloop0 before a server opens; paplay -d audioloop0 is refused (exits 1), never linked to a sink', async function () {
      await startDaemon();
      assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === NODE), 'no sink audioloop0 yet');
      assert.ok(!(await pactlShort('sources')).some((r) => r[1] === NODE), 'no source audioloop0 yet');
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      const file = writeFile('c.raw', counterPcm('s16le', 2, 48000 * 10));
      const play = spawnTracked('paplay', [...rawArgs(fmt), '-d', NODE, file]);
      let linked: Row | undefined;
      const poll = setInterval(() => {
        void pactlShort('sink-inputs').then((rows) => {
          linked ??= rows.find((r) => r[1] !== undefined && r[1] !== '');
        });
      }, 20);
      const p = await play.done;
      clearInterval(poll);
      assert.equal(p.code, 1, `paplay exits 1 (refused); stderr: ${p.stderr}`);
      assert.match(p.stderr, /Stream error|Failed to connect/);
      assert.equal(linked, undefined, `the stream was never a sink-input of any sink: ${String(linked)}`);
      const st = await loopStatus(dir);
      assert.equal(st.state, 'idle');
      assert.equal(st.bytes, 0);
      assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === NODE), 'still no audioloop0');
    });

    for (const fmt of [
      { format: 's16le', rate: 48000, channels: 2 },
      { format: 'f32le', rate: 44100, channels: 1 },
      { format: 's24le', rate: 96000, channels: 6 },
    ] as PcmFormat[]) {
      it(`openServer(read, ${pulseSpec(fmt)}) makes audioloop0 a sink with exactly that format; it goes on close`, async function () {
        await startDaemon();
        const srv = await open('read', fmt);
        assert.equal(srv.node, NODE);
        assert.deepEqual(srv.format, fmt);
        const row = await waitFor(async () => (await pactlShort('sinks')).find((r) => r[1] === NODE), 5000, 'the sink');
        assert.equal(row[3], pulseSpec(fmt));
        // a sink's monitor is a source, but there is no source named audioloop0
        assert.ok(!(await pactlShort('sources')).some((r) => r[1] === NODE), 'not a source');
        const st = await loopStatus(dir);
        assert.equal(st.state, 'waiting');
        assert.equal(st.mode, 'read');
        assert.deepEqual(st.format, fmt);
        await srv.close();
        await waitFor(async () => !(await pactlShort('sinks')).some((r) => r[1] === NODE), 5000, 'the sink to go');
        await waitFor(async () => (await loopStatus(dir)).state === 'idle', 5000, 'the loop to be idle');
      });
    }

    for (const fmt of [
      { format: 's16le', rate: 48000, channels: 2 },
      { format: 'f32le', rate: 44100, channels: 1 },
    ] as PcmFormat[]) {
      it(`openServer(write, ${pulseSpec(fmt)}) makes audioloop0 a source (not a sink); it goes on close`, async function () {
        await startDaemon();
        const srv = await open('write', fmt);
        const row = await waitFor(async () => (await pactlShort('sources')).find((r) => r[1] === NODE), 5000, 'the source');
        assert.equal(row[3], pulseSpec(fmt));
        assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === NODE), 'not a sink');
        assert.equal((await loopStatus(dir)).mode, 'write');
        await srv.close();
        await waitFor(async () => !(await pactlShort('sources')).some((r) => r[1] === NODE), 5000, 'the source to go');
      });
    }

    it('a second open after close works again (the loop returns to idle)', async function () {
      await startDaemon();
      const a = await open('read');
      await waitFor(async () => (await pactlShort('sinks')).some((r) => r[1] === NODE), 5000, 'the sink');
      await a.close();
      await waitFor(async () => (await loopStatus(dir)).state === 'idle', 5000, 'idle');
      const b = await open('write');
      await waitFor(async () => (await pactlShort('sources')).some((r) => r[1] === NODE), 5000, 'the source');
      await b.close();
    });
  });

  // ---------------------------------------------------------------- 2
  describe('2. refused opens', function () {
    /*
     * On this shared 2-core machine a graph node (pipewire-pulse, paplay, or
     * our own data thread, none of them realtime here) is sometimes
     * descheduled for ~100 ms: the graph then plays a stretch of silence and
     * the late data is lost before it reaches our node. That is not
     * something the loop can see or fix, so the sample-exact tests get a
     * retry; a real bug fails every attempt.
     */
    this.retries(2);
    it('read+write is EINVAL, in the library and on the wire, with a clear message', async function () {
      await startDaemon();
      await assert.rejects(openServer(0, { mode: 'readwrite', socketDir: dir }), (e: AudioloopError) => {
        assert.equal(e.code, 'EINVAL');
        assert.equal(e.errno, os.constants.errno.EINVAL);
        assert.equal(e.syscall, 'open');
        assert.match(e.message, /read\+write is not permitted/);
        return true;
      });
      // a server in another language speaks the protocol directly: the daemon refuses too
      for (const mode of ['readwrite', 'rw', 'read+write']) {
        const reply = await rawHandshake(`OPEN mode=${mode} format=s16le rate=48000 channels=2\n`);
        assert.match(reply, new RegExp(`^ERR EINVAL ${os.constants.errno.EINVAL} read\\+write is not permitted`), `mode=${mode}: ${reply}`);
      }
      assert.equal((await loopStatus(dir)).state, 'idle', 'nothing was opened');
      assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === NODE));
    });

    it('a second server on the same instance is EBUSY while the first works on', async function () {
      await startDaemon();
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      const first = await open('read', fmt);
      const got = collect(first);
      for (const mode of ['read', 'write'] as const) {
        await assert.rejects(openServer(0, { mode, socketDir: dir, app: 'intruder' }), (e: AudioloopError) => {
          assert.equal(e.code, 'EBUSY');
          assert.equal(e.errno, os.constants.errno.EBUSY);
          assert.match(e.message, /audioloop0: the server end is already open by loop-test \(pid \d+\), mode=read/);
          return true;
        });
      }
      // the first server still gets every frame a client plays
      const frames = 24000;
      const file = writeFile('c.raw', counterPcm('s16le', 2, frames));
      const play = await run('paplay', [...rawArgs(fmt), '-d', NODE, file]);
      assert.equal(play.code, 0, play.stderr);
      const end = await got.ended;
      assert.equal(end.err?.code, 'ECONNRESET');
      const c = checkCounter(got.data(), 's16le', 2);
      assert.equal(c.first, 0);
      assert.equal(c.frames, frames, JSON.stringify(c));
      assert.equal(c.bad, 0);
    });

    it('an unknown instance is refused with ENODEV naming audioloop_instances; no daemon is ENOENT', async function () {
      await startDaemon(2);
      await assert.rejects(openServer(5, { mode: 'read', socketDir: dir }), (e: AudioloopError) => {
        assert.equal(e.code, 'ENODEV');
        assert.match(e.message, /no loop instance 5.*audioloop_instances/);
        return true;
      });
      await assert.rejects(openServer(0, { mode: 'read', socketDir: path.join(tmp, 'nowhere') }), (e: AudioloopError) => {
        assert.equal(e.code, 'ENOENT');
        assert.match(e.message, /no audioloop daemon/);
        return true;
      });
    });
  });

  // ---------------------------------------------------------------- 3
  describe('3. the first read/write waits until a client starts', function () {
    /*
     * On this shared 2-core machine a graph node (pipewire-pulse, paplay, or
     * our own data thread, none of them realtime here) is sometimes
     * descheduled for ~100 ms: the graph then plays a stretch of silence and
     * the late data is lost before it reaches our node. That is not
     * something the loop can see or fix, so the sample-exact tests get a
     * retry; a real bug fails every attempt.
     */
    this.retries(2);
    for (const nonblock of [false, true]) {
      it(`read mode${nonblock ? ' (nonblock)' : ''}: no START and no data without a client, then paplay starts and data flows`, async function () {
        await startDaemon();
        const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
        const srv = await open('read', { ...fmt, nonblock });
        const first = srv.read(4096);
        first.catch(() => undefined);
        assert.equal(await settlesWithin(first, 1500), false, `the first read waits (nonblock=${nonblock}) instead of returning data or EAGAIN`);
        assert.equal(srv.client, null, 'no START line arrived');
        let st = await loopStatus(dir);
        assert.equal(st.state, 'waiting');
        assert.equal(st.bytes, 0);
        const frames = 48000;
        const file = writeFile('c.raw', counterPcm('s16le', 2, frames));
        const play = spawnTracked('paplay', [...rawArgs(fmt), '-d', NODE, file]);
        const buf = await first;
        if (nonblock) {
          // what is there: PipeWire hands over a quantum (1024 frames), PulseAudio a 10 ms fragment (480)
          assert.ok(buf.length > 0 && buf.length <= 4096 && buf.length % 4 === 0, `whole frames, no more than asked: ${buf.length}`);
        } else {
          assert.equal(buf.length, 4096, 'a blocking-size read once data flows');
        }
        const client = srv.client as ClientStart | null;
        assert.ok(client, 'START came before the data');
        assert.equal(client.app, 'paplay');
        st = await loopStatus(dir);
        assert.equal(st.state, 'running');
        // the rest, until the client goes away
        const parts = [buf];
        let err: AudioloopError | null = null;
        for (;;) {
          try {
            parts.push(await srv.read(16384));
          } catch (e) {
            if ((e as AudioloopError).code === 'EAGAIN') {
              await sleep(10);
              continue;
            }
            err = e as AudioloopError;
            break;
          }
        }
        assert.equal(err?.code, 'ECONNRESET');
        assert.equal((await play.done).code, 0);
        // the graph may deliver a little silence before paplay's first frame
        const c = checkCounter(Buffer.concat(parts), 's16le', 2);
        assert.equal(c.first, 0, JSON.stringify(c));
        assert.equal(c.frames, frames, JSON.stringify(c));
        assert.equal(c.bad, 0);
      });

      it(`write mode${nonblock ? ' (nonblock)' : ''}: writes are not consumed without a client (bounded), then parecord starts and data flows`, async function () {
        await startDaemon();
        const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
        // the library: the first write waits for the client
        const srv = await open('write', { ...fmt, nonblock });
        const w = srv.write(counterPcm('s16le', 2, 4800));
        w.catch(() => undefined);
        assert.equal(await settlesWithin(w, 1500), false, 'the first write waits for a client');
        assert.equal(srv.client, null);
        const st = await loopStatus(dir);
        assert.equal(st.state, 'waiting');
        assert.equal(st.bytes, 0, 'nothing reached the node');
        assert.equal(st.fill, 0, 'nothing in the ring');
        const rec = spawnTracked('parecord', [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, path.join(tmp, 'rec.raw')]);
        await w;
        assert.equal((srv.client as ClientStart | null)?.app, 'parecord');
        const more = writeCounter(srv, { frames: 24000 });
        assert.equal((await more).err, null);
        await waitFor(async () => (await loopStatus(dir)).bytes > 0, 5000, 'data to flow');
        stopTracked(rec.pid);
        await rec.done;
      });

      it(`write mode${nonblock ? ' (nonblock)' : ''}, raw protocol: a server that writes without waiting for START is held at a bounded buffer`, async function () {
        await startDaemon();
        const sock = net.connect(path.join(dir, 'audioloop0'));
        await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
        sock.write(`OPEN mode=write format=s16le rate=48000 channels=2 nonblock=${nonblock ? 1 : 0} app=raw-writer\n`);
        const lines: string[] = [];
        let text = '';
        sock.on('data', (d: Buffer) => {
          text += d.toString();
          lines.splice(0, lines.length, ...text.split('\n').filter(Boolean));
        });
        await waitFor(() => lines.length >= 1, 5000, 'OK');
        assert.match(lines[0]!, /^OK instance=0 node=audioloop0 mode=write format=s16le rate=48000 channels=2 frame=4$/);
        // write as fast as the socket takes it, for a while
        const chunk = counterPcm('s16le', 2, 4800);
        let offered = 0;
        let blockedSince = 0;
        const deadline = Date.now() + 8000;
        while (Date.now() < deadline) {
          if (sock.writableNeedDrain) {
            if (!blockedSince) blockedSince = Date.now();
            if (Date.now() - blockedSince > 1500) break;
            await sleep(50);
            continue;
          }
          blockedSince = 0;
          sock.write(chunk);
          offered += chunk.length;
        }
        const accepted = offered - sock.writableLength;
        assert.ok(blockedSince > 0, `the daemon stopped taking data (accepted ${accepted} bytes)`);
        assert.ok(accepted < 1 << 20, `at most a socket buffer is taken before a client starts: ${accepted} bytes`);
        const st = await loopStatus(dir);
        assert.equal(st.state, 'waiting');
        assert.equal(st.bytes, 0, 'nothing reached the node');
        assert.ok(st.queued < 1 << 17, `the daemon holds little itself: ${st.queued} bytes`);
        assert.equal(lines.length, 1, 'no START yet');
        this.test!.title += ` [held ${accepted} B in socket buffers, daemon queued ${st.queued} B]`;
        // a client starts: START arrives and the held data flows
        const file = path.join(tmp, 'rec.raw');
        const rec = spawnTracked('parecord', [...rawArgs({ format: 's16le', rate: 48000, channels: 2 }), '--latency-msec=20', '-d', NODE, file]);
        await waitFor(() => lines.some((l) => l.startsWith('START')), 5000, 'START');
        await waitFor(async () => (await loopStatus(dir)).bytes >= accepted, 10000, 'the held data to flow');
        stopTracked(rec.pid);
        await rec.done;
        sock.destroy();
      });
    }
  });

  // ---------------------------------------------------------------- 4
  describe('4. the client goes away: ECONNRESET after the data', function () {
    /*
     * On this shared 2-core machine a graph node (pipewire-pulse, paplay, or
     * our own data thread, none of them realtime here) is sometimes
     * descheduled for ~100 ms: the graph then plays a stretch of silence and
     * the late data is lost before it reaches our node. That is not
     * something the loop can see or fix, so the sample-exact tests get a
     * retry; a real bug fails every attempt.
     */
    this.retries(2);
    for (const fmt of [
      { format: 's16le', rate: 48000, channels: 2 },
      { format: 'f32le', rate: 48000, channels: 1 },
    ] as PcmFormat[]) {
      it(`read mode ${pulseSpec(fmt)}: every frame paplay played, sample-exact, then ECONNRESET`, async function () {
        await startDaemon();
        const srv = await open('read', fmt);
        const got = collect(srv);
        const frames = Math.round(fmt.rate * 1.5);
        const file = writeFile('c.raw', counterPcm(fmt.format, fmt.channels, frames));
        const play = await run('paplay', [...rawArgs(fmt), '-d', NODE, file]);
        assert.equal(play.code, 0, play.stderr);
        const end = await got.ended;
        assert.ok(end.err, 'the stream ends with an error, not a plain end');
        assert.equal(end.err.code, 'ECONNRESET');
        assert.equal(end.err.errno, os.constants.errno.ECONNRESET);
        assert.equal(end.err.syscall, 'read');
        const data = got.data();
        assert.equal(end.bytesBefore, data.length, 'no data after the error');
        const c = checkCounter(data, fmt.format, fmt.channels);
        assert.equal(c.first, 0, 'from the first frame');
        assert.equal(c.frames, frames, `every frame once, in order: ${JSON.stringify(c)}`);
        assert.equal(c.bad, 0);
        assert.ok(c.lead + c.frames + c.tail === data.length / frameBytes(fmt));
        // the reset is final; the loop is free again
        await assert.rejects(srv.read(4096), { code: 'ECONNRESET' });
        await waitFor(async () => (await loopStatus(dir)).state === 'idle', 5000, 'idle');
      });
    }

    it(`read mode float32le 1ch 44100Hz (${onPulseAudio() ? 'PulseAudio runs the null sink at 44100 Hz: bit-exact' : 'resampled by the 48 kHz graph, see 6.'}): the right amount arrives, then ECONNRESET`, async function () {
      await startDaemon();
      const fmt: PcmFormat = { format: 'f32le', rate: 44100, channels: 1 };
      const srv = await open('read', fmt);
      const got = collect(srv);
      const frames = 44100;
      const file = writeFile('c.raw', counterPcm('f32le', 1, frames));
      const play = await run('paplay', [...rawArgs(fmt), '-d', NODE, file]);
      assert.equal(play.code, 0, play.stderr);
      const end = await got.ended;
      assert.equal(end.err?.code, 'ECONNRESET');
      const data = got.data();
      let first = -1;
      let last = -1;
      for (let i = 0; i < data.length / 4; i++) {
        if (Math.abs(data.readFloatLE(i * 4)) > 1e-4) {
          if (first < 0) first = i;
          last = i;
        }
      }
      const span = last - first + 1;
      assert.ok(Math.abs(span - frames) < frames * 0.02, `about ${frames} frames of signal arrive: ${span}`);
      if (onPulseAudio()) {
        const c = checkCounter(data, 'f32le', 1);
        assert.deepEqual([c.first, c.frames, c.bad], [0, frames, 0], `no resampling on PulseAudio: ${JSON.stringify(c)}`);
      }
    });

    for (const recorder of PW_TOO('parecord', 'pw-record')) {
      it(`write mode: ${recorder} records, exits, and the server's write fails with ECONNRESET`, async function () {
        await startDaemon();
        const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
        const srv = await open('write', fmt);
        const writing = writeCounter(srv);
        const file = path.join(tmp, 'rec.raw');
        const args =
          recorder === 'parecord'
            ? [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, file]
            : ['--target', NODE, '--rate', '48000', '--channels', '2', '--format', 's16', file.replace(/\.raw$/, '.wav')];
        const rec = spawnTracked(recorder, args);
        await srv.waitForClient();
        await waitFor(async () => (await loopStatus(dir)).bytes > 48000 * 4, 10000, 'a second of data to flow');
        process.kill(rec.pid, 'SIGINT');
        const t0 = Date.now();
        await rec.done;
        assert.equal(await settlesWithin(writing, 5000), true, 'the writer learns about it within 5 s');
        const res = await writing;
        assert.ok(res.err, `a write failed (after ${res.frames} frames)`);
        assert.equal(res.err.code, 'ECONNRESET');
        assert.equal(res.err.errno, os.constants.errno.ECONNRESET);
        assert.equal(res.err.syscall, 'write');
        assert.ok(res.frames >= 48000, `data flowed first: ${res.frames} frames`);
        assert.ok(Date.now() - t0 < 5000);
        await assert.rejects(srv.write(counterPcm('s16le', 2, 10)), { code: 'ECONNRESET' });
        await waitFor(async () => (await loopStatus(dir)).state === 'idle', 5000, 'idle');
      });
    }
  });

  // ---------------------------------------------------------------- 5
  describe('5. the server goes away: client streams end and are not moved', function () {
    /** client streams on any device (the daemon's own and modules' streams on PulseAudio are not) */
    async function otherStreams(kind: 'sink-inputs' | 'source-outputs'): Promise<number> {
      return clientStreamCount(process.env, kind);
    }

    for (const player of PW_TOO('paplay', 'pw-play')) {
      it(`${player} playing into audioloop0 ends when the server closes; its stream goes nowhere else`, async function () {
        await startDaemon();
        const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
        const srv = await open('read', fmt);
        const got = collect(srv);
        const frames = 48000 * 30; // far longer than the test
        const pcm = counterPcm('s16le', 2, frames);
        const args =
          player === 'paplay'
            ? [...rawArgs(fmt), '-d', NODE, writeFile('long.raw', pcm)]
            : ['--target', NODE, writeFile('long.wav', Buffer.concat([wavHeader(fmt, pcm.length), pcm]))];
        const proc = spawnTracked(player, args);
        await srv.waitForClient();
        await waitFor(() => got.bytes() > 48000 * 4 / 2, 10000, 'half a second of data');
        assert.equal(await otherStreams('sink-inputs'), 1, 'one stream plays');
        const t0 = Date.now();
        await srv.close();
        const ended = await settlesWithin(proc.done, 5000);
        assert.ok(ended, `${player} ended within 5 s of the server closing (stderr: ${proc.stderr()})`);
        const fin = await proc.done;
        assert.equal(fin.signal, null, `${player} ended by itself`);
        assert.ok(Date.now() - t0 < 5000);
        // neither on another sink (auto_null or any) nor parked
        assert.equal(await otherStreams('sink-inputs'), 0, 'no sink-input remains');
        await sleep(500);
        assert.equal(await otherStreams('sink-inputs'), 0, 'and none comes back');
        assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === NODE), 'the node is gone');
      });
    }

    for (const recorder of PW_TOO('parecord', 'pw-record')) {
      it(`${recorder} recording from audioloop0 ends when the server closes; its stream goes nowhere else`, async function () {
        await startDaemon();
        const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
        const srv = await open('write', fmt);
        let stop = false;
        const writing = (async () => {
          let n = 0;
          while (!stop) {
            await srv.write(counterPcm('s16le', 2, 960, n));
            n += 960;
          }
        })();
        writing.catch(() => undefined);
        const file = path.join(tmp, 'rec.raw');
        const args =
          recorder === 'parecord'
            ? [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, file]
            : ['--target', NODE, '--rate', '48000', '--channels', '2', '--format', 's16', file.replace(/\.raw$/, '.wav')];
        const proc = spawnTracked(recorder, args);
        await srv.waitForClient();
        await waitFor(async () => (await loopStatus(dir)).bytes > 48000 * 2, 10000, 'half a second of data');
        assert.equal(await otherStreams('source-outputs'), 1, 'one stream records');
        stop = true;
        await writing;
        const t0 = Date.now();
        await srv.close();
        assert.ok(await settlesWithin(proc.done, 5000), `${recorder} ended within 5 s of the server closing (stderr: ${proc.stderr()})`);
        assert.equal((await proc.done).signal, null, `${recorder} ended by itself`);
        assert.ok(Date.now() - t0 < 5000);
        assert.equal(await otherStreams('source-outputs'), 0, 'no source-output remains');
        await sleep(500);
        assert.equal(await otherStreams('source-outputs'), 0, 'and none comes back');
        assert.ok(!(await pactlShort('sources')).some((r) => r[1] === NODE), 'the node is gone');
      });
    }
  });

  // ---------------------------------------------------------------- 6
  /*
   * Sample-exact only at the graph rate. PipeWire 0.3.65 runs the graph at
   * default.clock.rate (48000; allowed-rates is [48000] by default), so a
   * 44100 Hz loop is resampled twice (client -> graph -> node) and cannot be
   * bit-exact; the 44.1 kHz test below checks the amount and order instead.
   */
  describe('6. write mode is bit-exact', function () {
    /*
     * On this shared 2-core machine a graph node (pipewire-pulse, paplay, or
     * our own data thread, none of them realtime here) is sometimes
     * descheduled for ~100 ms: the graph then plays a stretch of silence and
     * the late data is lost before it reaches our node. That is not
     * something the loop can see or fix, so the sample-exact tests get a
     * retry; a real bug fails every attempt.
     */
    this.retries(2);
    for (const fmt of [
      { format: 's16le', rate: 48000, channels: 2 },
      { format: 'f32le', rate: 48000, channels: 1 },
      { format: 's24le', rate: 48000, channels: 2 },
    ] as PcmFormat[]) {
      it(`${pulseSpec(fmt)}: parecord records exactly the pattern the server wrote`, async function () {
        await startDaemon();
        const srv = await open('write', fmt);
        const file = path.join(tmp, 'rec.raw');
        const rec = spawnTracked('parecord', [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, file]);
        const frames = fmt.rate; // one second
        const res = await writeCounter(srv, { frames });
        assert.equal(res.err, null);
        // the whole run, then the silence of the underrun that follows it
        await waitFor(() => fs.existsSync(file) && checkCounter(fs.readFileSync(file), fmt.format, fmt.channels).tail > 0, 10000, 'parecord to have it all');
        const c = checkCounter(fs.readFileSync(file), fmt.format, fmt.channels);
        assert.equal(c.first, 0, JSON.stringify(c));
        assert.equal(c.frames, frames, `every frame once, in order: ${JSON.stringify(c)}`);
        assert.equal(c.bad, 0, JSON.stringify(c));
        await srv.close();
        await rec.done;
      });
    }
  });

  // ---------------------------------------------------------------- 7
  describe('7. xruns are reported; memory stays bounded', function () {
    it('a server that does not read: xruns in STATUS, every frame either delivered or counted as dropped, buffers bounded', async function () {
      await startDaemon(1, 200);
      const fmt: PcmFormat = { format: 's32le', rate: 48000, channels: 2 }; // a counter that does not wrap in 3 s
      const srv = await open('read', fmt);
      const frames = 48000 * 3;
      const file = writeFile('c.raw', counterPcm('s32le', 2, frames));
      const play = spawnTracked('paplay', [...rawArgs(fmt), '-d', NODE, file]);
      let maxFill = 0;
      let maxQueued = 0;
      let size = 0;
      while (play.child.exitCode === null) {
        const st = await loopStatus(dir);
        maxFill = Math.max(maxFill, st.fill);
        maxQueued = Math.max(maxQueued, st.queued);
        size = st.size || size;
        await sleep(100);
      }
      assert.equal((await play.done).code, 0);
      const st = await loopStatus(dir);
      assert.ok(st.xruns > 0, `xruns counted: ${JSON.stringify(st)}`);
      assert.ok(st.xrunBytes > 0);
      assert.ok(size > 0 && maxFill <= size, `the ring never holds more than its size (${maxFill} <= ${size})`);
      assert.ok(maxQueued <= 1 << 16, `the daemon queues little beyond the ring: ${maxQueued}`);
      // now read: what was kept arrives, then ECONNRESET
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
        assert.ok(v - 1 > last, `frames stay in order, no duplicate (frame ${i}: ${v - 1} after ${last})`);
        last = v - 1;
        delivered++;
      }
      assert.ok(delivered < frames, 'some frames were dropped');
      assert.ok(delivered > 0, 'some frames were kept');
      assert.ok(delivered + st.xrunBytes / fb >= frames, `every frame is delivered (${delivered}) or counted as dropped (${st.xrunBytes / fb}) of ${frames}`);
    });

    it('CLI daemon: a server writing as fast as it can is backpressured to the client rate; RSS and buffers stay bounded', async function () {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const d = spawnTracked(process.execPath, [CLI, 'daemon', '-n', '1', '-s', dir, '--sound-server', 'system', '--log-level', 'debug']);
      await waitFor(() => fs.existsSync(path.join(dir, 'control')) && fs.existsSync(path.join(dir, 'audioloop0')), 15000, 'the CLI daemon');
      const st0 = await fetchStatus(dir);
      assert.equal(st0.pid, d.pid);
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      const srv = await openServer(0, { mode: 'write', socketDir: dir, ...fmt, app: 'fast-writer' });
      servers.push(srv);
      const rss0 = procRssKb(d.pid);
      const rec = spawnTracked('parecord', [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, path.join(tmp, 'rec.raw')]);
      await srv.waitForClient();
      const t0 = Date.now();
      let written = 0;
      let maxRss = rss0;
      let maxQueued = 0;
      let maxFill = 0;
      let size = 0;
      const chunk = counterPcm('s16le', 2, 48000 / 10);
      let lastPoll = 0;
      while (Date.now() - t0 < 4000) {
        await srv.write(chunk);
        written += chunk.length;
        if (Date.now() - lastPoll > 200) {
          lastPoll = Date.now();
          const st = (await fetchStatus(dir)).loops[0]!;
          maxQueued = Math.max(maxQueued, st.queued);
          maxFill = Math.max(maxFill, st.fill);
          size = st.size || size;
          maxRss = Math.max(maxRss, procRssKb(d.pid));
        }
      }
      const secs = (Date.now() - t0) / 1000;
      const rate = 48000 * 4;
      // real time plus what fits in the buffers on the way (ring, socket buffers)
      assert.ok(written <= secs * rate + (2 << 20), `the writer is held to about the client's rate: ${written} bytes in ${secs.toFixed(1)} s (${(written / secs / rate).toFixed(2)}x real time)`);
      assert.ok(written >= secs * rate * 0.5, `and not starved: ${written} bytes in ${secs.toFixed(1)} s`);
      assert.ok(maxFill <= size, `ring ${maxFill} <= ${size}`);
      assert.ok(maxQueued <= 1 << 17, `pending in the daemon: ${maxQueued}`);
      assert.ok(maxRss - rss0 < 40 * 1024, `daemon RSS grew by ${maxRss - rss0} kB (from ${rss0} kB)`);
      this.test!.title += ` [${(written / secs / rate).toFixed(2)}x real time, max queued ${maxQueued} B, RSS +${maxRss - rss0} kB]`;
      stopTracked(rec.pid);
      await rec.done;
      await srv.close();
      stopTracked(d.pid);
      assert.equal((await d.done).code, 0, d.stderr());
    });

    it('CLI daemon: a server that stops reading does not make the daemon buffer without limit', async function () {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const d = spawnTracked(process.execPath, [CLI, 'daemon', '-n', '1', '-s', dir, '--sound-server', 'system']);
      await waitFor(() => fs.existsSync(path.join(dir, 'control')) && fs.existsSync(path.join(dir, 'audioloop0')), 15000, 'the CLI daemon');
      // a fat format, so that unbounded buffering would show: 1.5 MB/s
      const fmt: PcmFormat = { format: 'f32le', rate: 96000, channels: 4 };
      const srv = await openServer(0, { mode: 'read', socketDir: dir, ...fmt, app: 'stalled-reader' });
      servers.push(srv);
      const rss0 = procRssKb(d.pid);
      const frames = 96000 * 4;
      const file = writeFile('c.raw', counterPcm('f32le', 4, frames));
      const play = spawnTracked('paplay', [...rawArgs(fmt), '-d', NODE, file]);
      let maxRss = rss0;
      let maxQueued = 0;
      let maxFill = 0;
      let size = 0;
      while (play.child.exitCode === null) {
        const st = (await fetchStatus(dir)).loops[0]!;
        maxQueued = Math.max(maxQueued, st.queued);
        maxFill = Math.max(maxFill, st.fill);
        size = st.size || size;
        maxRss = Math.max(maxRss, procRssKb(d.pid));
        await sleep(100);
      }
      const st = (await fetchStatus(dir)).loops[0]!;
      const total = frames * frameBytes(fmt);
      assert.ok(st.xruns > 0, `xruns reported: ${JSON.stringify(st)}`);
      assert.ok(st.xrunBytes > total / 2, `most of the ${total} bytes were dropped, not buffered: ${st.xrunBytes}`);
      assert.ok(maxFill <= size);
      assert.ok(maxQueued <= 1 << 17, `pending in the daemon: ${maxQueued}`);
      assert.ok(maxRss - rss0 < 40 * 1024, `daemon RSS grew by ${maxRss - rss0} kB`);
      this.test!.title += ` [xruns ${st.xruns}, dropped ${st.xrunBytes} of ${total} B, max queued ${maxQueued} B, RSS +${maxRss - rss0} kB]`;
      await srv.close();
      stopTracked(d.pid);
      await d.done;
    });
  });

  // ---------------------------------------------------------------- 8
  /*
   * No mixer of our own: the loop's volume and mute are the sound server's
   * (pactl set-sink-volume / set-source-mute, pavucontrol). A linear 0.5
   * halves every sample on its way through the node.
   */
  describe('8. volume and mute through the sound server', function () {
    /** channel-0 values of the non-silent frames */
    function levels(buf: Buffer): number[] {
      const out: number[] = [];
      for (let i = 0; i + 4 <= buf.length; i += 4) {
        const v = buf.readInt16LE(i);
        if (v !== 0) out.push(v);
      }
      return out;
    }
    const constant = (frames: number, v: number): Buffer => {
      const b = Buffer.alloc(frames * 4);
      for (let i = 0; i < frames * 2; i++) b.writeInt16LE(v, i * 2);
      return b;
    };

    it('read: pactl set-sink-volume audioloop0 0.5 halves what the server reads; set-sink-mute 1 makes it silence', async function () {
      await startDaemon();
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      const srv = await open('read', fmt);
      const got = collect(srv);
      await waitFor(async () => (await pactlShort('sinks')).some((r) => r[1] === NODE), 5000, 'the sink');
      assert.equal((await run('pactl', ['set-sink-volume', NODE, '0.5'])).code, 0);
      const half = writeFile('half.raw', constant(24000, 16000));
      assert.equal((await run('paplay', [...rawArgs(fmt), '-d', NODE, half])).code, 0);
      await got.ended;
      const v = levels(got.data());
      assert.ok(v.length >= 24000 * 0.9, `the tone arrived: ${v.length} frames`);
      const off = v.filter((x) => Math.abs(x - 8000) > 2);
      assert.equal(off.length, 0, `every sample halved (8000 +-2), ${off.length} not, e.g. ${off.slice(0, 5).join(',')}`);
      this.test!.title += ` [${v.length} frames at ${Math.min(...v)}..${Math.max(...v)}]`;

      // a new session on the same node: muted
      await waitFor(async () => (await loopStatus(dir)).state === 'idle', 5000, 'idle');
      const srv2 = await open('read', fmt);
      const got2 = collect(srv2);
      await waitFor(async () => (await pactlShort('sinks')).some((r) => r[1] === NODE), 5000, 'the sink again');
      assert.equal((await run('pactl', ['set-sink-mute', NODE, '1'])).code, 0);
      assert.equal((await run('paplay', [...rawArgs(fmt), '-d', NODE, half])).code, 0);
      await got2.ended;
      assert.ok(got2.data().length >= 24000 * 4 * 0.9, `data flowed: ${got2.data().length} bytes`);
      assert.deepEqual(levels(got2.data()), [], 'muted: nothing but silence');
    });

    it('write: pactl set-source-volume audioloop0 0.5 halves what parecord records', async function () {
      await startDaemon();
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      const srv = await open('write', fmt);
      await waitFor(async () => (await pactlShort('sources')).some((r) => r[1] === NODE), 5000, 'the source');
      assert.equal((await run('pactl', ['set-source-volume', NODE, '0.5'])).code, 0);
      const file = path.join(tmp, 'rec.raw');
      const rec = spawnTracked('parecord', [...rawArgs(fmt), '--latency-msec=20', '-d', NODE, file]);
      await srv.write(constant(24000, 16000));
      await waitFor(() => fs.existsSync(file) && levels(fs.readFileSync(file)).length >= 24000, 10000, 'parecord to record it');
      const v = levels(fs.readFileSync(file));
      const off = v.filter((x) => Math.abs(x - 8000) > 2);
      assert.equal(off.length, 0, `every sample halved (8000 +-2), ${off.length} not, e.g. ${off.slice(0, 5).join(',')}`);
      this.test!.title += ` [${v.length} frames at ${Math.min(...v)}..${Math.max(...v)}]`;
      await srv.close();
      await rec.done;
    });
  });

  /** one handshake on the raw socket: returns the first reply line */
  function rawHandshake(line: string, instance = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path.join(dir, `audioloop${instance}`));
      let buf = '';
      sock.on('connect', () => sock.write(line));
      sock.on('data', (d) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          sock.destroy();
          resolve(buf.slice(0, nl));
        }
      });
      sock.on('error', reject);
      sock.on('end', () => resolve(buf));
    });
  }
});
