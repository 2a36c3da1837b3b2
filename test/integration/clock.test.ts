/**
 * Issue 13, OPEN clock=1 end to end: a real daemon (in process, the default
 * native data plane) over the real headless PipeWire, real clients (paplay,
 * pw-record), the CLI and real ALSA programs (arecord, aplay with the
 * freshly built plugin). Rates are measured over ~3 s windows on the
 * monotonic clock and must be within a few percent of real time.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Daemon } from '../../src/daemon';
import { PipeWireBackend } from '../../src/backend/pipewire';
import { openServer } from '../../src/client';
import { fetchStatus } from '../../src/control';
import type { PcmFormat } from '../../src/format';
import { requireSoundServer } from '../helpers/soundserver';
import { finished, run, sleep, spawnTracked, waitFor } from '../helpers/proc';
import { analyzeTone, assertTone as assertToneOf } from '../helpers/tone';
import { useDaemonFixture } from '../helpers/daemon-fixture';
import { checkCounterSkippingSilence, counterPcm } from '../helpers/pcm';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const PLUGIN = path.join(ROOT, 'build', 'alsa', 'libasound_module_pcm_audioloop.so');
const CONF = path.join(ROOT, 'alsa', '60-audioloop.conf');
const PACORK = path.join(ROOT, 'dist', 'tools', 'pacork');
const S16: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
const RATE = 48000;
const FRAME = 4;
/** how far a measured rate may be from the loop's */
const TOLERANCE = 0.03;

type CodedError = Error & { code?: string };

function assertRate(perSecond: number, expected: number, what: string): void {
  const off = Math.abs(perSecond - expected) / expected;
  process.stderr.write(`      [measured] ${what}: ${perSecond.toFixed(1)}/s (expected ${expected}, ${(off * 100).toFixed(2)} % off)\n`);
  assert.ok(off < TOLERANCE, `${what}: ${perSecond.toFixed(1)}/s, expected ${expected} within ${TOLERANCE * 100} %`);
}

describe('OPEN clock=1 (issue 13): real daemon, real PipeWire, real clients', function () {
  this.timeout(60000);
  const fx = useDaemonFixture({ prefix: 'audioloop-clock-', socketName: 'audioloop' });
  const servers = fx.servers;
  const logLines = fx.logLines;
  let tmp: string;
  let dir: string;
  let tone: string;

  before(requireSoundServer);
  beforeEach(function () {
    ({ tmp, dir } = fx);
    tone = path.join(tmp, 'tone440.wav');
    execFileSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', tone, 'synth', '1', 'sine', '440', 'vol', '0.5']);
  });

  function startDaemon(dataPlane: 'native' | 'js' = 'native', clientGraceMs = 1000): Promise<Daemon> {
    return fx.start({ audioloopInstances: 2, bufferMs: 1000, dataPlane, clientGraceMs }, () => new PipeWireBackend({ appName: 'audioloop-test-daemon' }));
  }

  function assertTone(pcm: Buffer, what: string): void {
    assertToneOf(pcm, S16, 440, 0.9, what);
  }

  for (const plane of ['native', 'js'] as const) {
    it(`read (data_plane = ${plane}): with no client the server reads silence at the loop's rate (3 s window), then paplay's tone on the same connection`, async function () {
      await startDaemon(plane);
      const srv = await openServer(0, { mode: 'read', ...S16, clock: true, socketDir: dir, app: 'clock-test' });
      servers.push(srv);
      const parts: Buffer[] = [];
      const first = await srv.read(1920);
      parts.push(first);
      const t1 = performance.now();
      let bytes = 0;
      while (performance.now() - t1 < 3000) {
        const b = await srv.read(9600); // 50 ms
        parts.push(b);
        bytes += b.length;
      }
      const t2 = performance.now();
      assert.equal(srv.client, null, 'no client yet');
      assert.ok(Buffer.concat(parts).every((x) => x === 0), 'silence');
      assertRate(bytes / FRAME / ((t2 - t1) / 1000), RATE, `read (${plane}), no client: silence frames`);
      const st = (await fetchStatus(dir)).loops[0]!;
      assert.equal(st.state, 'waiting');
      assert.equal(st.clock?.running, true);
      assert.ok(st.clock!.frames >= (bytes + first.length) / FRAME && st.clock!.lines > 250, JSON.stringify(st.clock));
      // a client: its tone follows the silence on the same connection
      const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=100', tone]);
      for (;;) {
        let b: Buffer;
        try {
          b = await srv.read(1 << 16);
        } catch (e) {
          assert.equal((e as CodedError).code, 'ECONNRESET', String(e));
          break;
        }
        parts.push(b);
      }
      assert.equal((await finished(play, 20000, 'paplay')).code, 0);
      assert.ok((srv.client as { app?: string } | null)?.app, 'START named the client');
      const all = Buffer.concat(parts);
      const silence = srv.silenceFrames * FRAME;
      assert.ok(all.subarray(0, silence).every((x) => x === 0), 'the SILENCE frames are silence');
      assertTone(all.subarray(silence), 'paplay after the clock');
      const after = (await fetchStatus(dir)).loops[0]!;
      assert.equal(after.state, 'idle');
    });

    it(`write (data_plane = ${plane}): with no client the writer is consumed at the loop's rate (3 s window), then pw-record gets everything after that, in order, without loss`, async function () {
      await startDaemon(plane);
      const srv = await openServer(1, { mode: 'write', ...S16, clock: true, socketDir: dir, app: 'clock-test' });
      servers.push(srv);
      // a real-time writer, 100 ms ahead: 10 ms chunks of the counter pattern
      const t0 = performance.now();
      let written = 0;
      let writing = true;
      let writtenAtStart = -1;
      srv.once('start', () => (writtenAtStart = written));
      const writer = (async () => {
        while (writing) {
          const due = Math.floor(((performance.now() - t0 + 100) * RATE) / 1000);
          if (due > written) {
            const n = due - written;
            await srv.write(counterPcm('s16le', 2, n, written));
            written += n;
          }
          await sleep(10);
        }
      })();
      await sleep(500);
      const s1 = (await fetchStatus(dir)).loops[1]!;
      const t1 = performance.now();
      await sleep(3000);
      const s2 = (await fetchStatus(dir)).loops[1]!;
      const t2 = performance.now();
      assert.equal(s2.state, 'waiting');
      assert.equal(s2.clock?.running, true);
      const lag = written - Math.floor(((t2 - t0) * RATE) / 1000);
      assert.ok(lag > 0, `the writer was never held (${lag} frames ahead of real time)`);
      assertRate((s2.clock!.consumedBytes - s1.clock!.consumedBytes) / ((t2 - t1) / 1000), RATE * FRAME, `write (${plane}), no client: bytes consumed`);
      assert.equal(s2.bytes, 0, 'nothing reached a client');
      // a client: it records what the clock did not consume, from there on, everything
      const out = path.join(tmp, 'rec.wav');
      const rec = spawnTracked('pw-record', ['--target', 'audioloop1', '--format', 's16', '--rate', '48000', '--channels', '2', out]);
      await waitFor(() => writtenAtStart >= 0, 15000, 'START');
      await sleep(1500);
      writing = false;
      await writer;
      const st = (await fetchStatus(dir)).loops[1]!;
      assert.equal(st.clock?.running, false);
      const consumed = st.clock!.consumedBytes / FRAME;
      await srv.close(); // EOF: played out, then pw-record's stream is ended
      const r = await finished(rec, 20000, 'pw-record');
      assert.notEqual(r.code, null);
      const raw = `${out}.s16`;
      const sx = await run('sox', [out, '-t', 'raw', '-e', 'signed-integer', '-b', '16', '-r', '48000', '-c', '2', raw]);
      assert.equal(sx.code, 0, sx.stderr);
      const got = checkCounterSkippingSilence(fs.readFileSync(raw), 's16le', 2);
      process.stderr.write(
        `      [measured] write (${plane}): ${consumed} frames consumed before START (${(consumed / RATE).toFixed(3)} s), START after ${writtenAtStart} frames written; ` +
          `pw-record got ${got.frames} frames from counter ${got.first}, ${got.silent} silent, ${got.bad} bad; ${written} written\n`,
      );
      assert.equal(got.bad, 0, `in order, nothing lost or repeated: ${JSON.stringify(got)}`);
      assert.equal(got.first, consumed % 30000, `the first frame recorded is the first the clock did not consume: ${JSON.stringify(got)}`);
      assert.equal(got.frames, written - consumed, `every frame after it, to the last one written: ${JSON.stringify(got)}`);
      assert.ok(consumed <= writtenAtStart, 'nothing written after START was consumed');
    });

  }

  for (const plane of ['native', 'js'] as const) {
    it(`read after START (data_plane = ${plane}): while the client is corked and in the grace period the server reads the node's silence at the loop's rate; every frame of the client in order`, async function () {
      assert.ok(fs.existsSync(PACORK), `${PACORK} is built by scripts/setup.sh`);
      await startDaemon(plane, 4000);
      const srv = await openServer(0, { mode: 'read', ...S16, clock: true, socketDir: dir, app: 'clock-test' });
      servers.push(srv);
      // what arrives after START, with its arrival time
      const got: { t: number; n: number }[] = [];
      const parts: Buffer[] = [];
      let started = false;
      let skip = 0;
      srv.once('start', () => {
        started = true;
        skip = srv.silenceFrames * FRAME;
      });
      const ended = new Promise<CodedError>((resolve) => {
        srv.readable.on('data', (b: Buffer) => {
          parts.push(b);
          if (started) got.push({ t: performance.now(), n: b.length });
        });
        srv.readable.once('error', resolve);
      });
      const frames = RATE;
      const pcmFile = path.join(tmp, 'counter.raw');
      fs.writeFileSync(pcmFile, counterPcm('s16le', 2, frames));
      const pc = spawnTracked('sh', ['-c', `exec ${PACORK} play audioloop0 48000 2 ${(frames / 2) * FRAME} 2500 < ${pcmFile}`]);
      const corked = await waitFor(() => (pc.stderr().includes('corked') ? performance.now() : null), 15000, 'corked');
      await sleep(2200);
      const r = await finished(pc, 20000, 'pacork');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /corked\nuncorked/);
      const gone = performance.now();
      const rate = (from: number, to: number): number => got.filter((g) => g.t >= from && g.t < to).reduce((a, g) => a + g.n, 0) / FRAME / ((to - from) / 1000);
      const err = await ended;
      assert.equal(err.code, 'ECONNRESET');
      assertRate(rate(corked + 300, corked + 2000), RATE, `read after START (${plane}), client corked: frames`);
      assertRate(rate(gone + 500, gone + 3500), RATE, `read after START (${plane}), grace period: frames`);
      const data = Buffer.concat(parts).subarray(skip);
      const k = checkCounterSkippingSilence(data, 's16le', 2);
      assert.deepEqual([k.first, k.frames, k.bad], [0, frames, 0], JSON.stringify(k));
      assert.ok(k.silent >= RATE * 6, `the cork (2.5 s) and the grace period (4 s) as silence: ${k.silent} frames`);
    });
  }

  it('CLI: record --clock writes silence, then the client; play --clock with no client takes the file\'s time and exits 0; bridge --send --clock sends RTP before a client', async function () {
    await startDaemon();
    const out = path.join(tmp, 'out.raw');
    const t0 = performance.now();
    const rec = spawnTracked(process.execPath, [CLI, 'record', '0', out, '--raw', '--clock', '-s', dir]);
    await waitFor(async () => (await fetchStatus(dir)).loops[0]!.clock?.running, 10000, 'the clock runs');
    await sleep(1500);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=100', tone]);
    assert.equal((await finished(play, 20000, 'paplay')).code, 0);
    const r = await finished(rec, 20000, 'record');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /silence until a client plays \(--clock\)/);
    const pcm = fs.readFileSync(out);
    const t = analyzeTone(pcm, S16);
    assert.ok(t.start >= RATE * 1.4, `silence before the client: ${t.start} frames`);
    assertTone(pcm, 'record --clock');

    const p0 = performance.now();
    const p = await run(process.execPath, [CLI, 'play', '1', tone, '--clock', '-s', dir], { timeoutMs: 15000 });
    const took = performance.now() - p0;
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /played 48000 frames/);
    process.stderr.write(`      [measured] play --clock of 1 s with no client: exit 0 after ${took.toFixed(0)} ms\n`);
    assert.ok(took >= 900 && took < 4000, `consumed in real time: ${took.toFixed(0)} ms`);
    for (const cmd of ['record', 'play', 'bridge']) assert.match((await run(process.execPath, [CLI, cmd, '--help'])).stdout, /--clock/, cmd);

    const udp = dgram.createSocket('udp4');
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
    let packets = 0;
    udp.on('message', () => packets++);
    const bridge = spawnTracked(process.execPath, [CLI, 'bridge', '0', '--send', `rtp://127.0.0.1:${(udp.address()).port}`, '--clock', '-s', dir]);
    try {
      await waitFor(() => packets > 0, 10000, 'the first RTP packet');
      const n0 = packets;
      await sleep(2000);
      const rate = (packets - n0) / 2;
      process.stderr.write(`      [measured] bridge --send --clock, no client: ${rate} RTP packets/s (20 ms Opus frames: 50/s)\n`);
      assert.ok(rate >= 45 && rate <= 55, `${rate} packets/s`);
    } finally {
      udp.close();
      bridge.child.kill('SIGINT');
      await finished(bridge, 10000, 'bridge');
    }
    assert.ok(performance.now() - t0 > 0);
  });

  it('ALSA: arecord -D audioloop:LOOP=0,CLOCK=1 reads silence in real time with no client, then the tone; aplay CLOCK=1 is consumed; CLOCK=2 is refused', async function () {
    assert.ok(fs.existsSync(PLUGIN), `${PLUGIN} is built (make -C alsa)`);
    await startDaemon();
    const conf = path.join(tmp, 'asound.conf');
    fs.writeFileSync(conf, `pcm_type.audioloop { lib "${PLUGIN}" }\n` + fs.readFileSync(CONF, 'utf8'));
    const env = { ...process.env, ALSA_CONFIG_PATH: conf, XDG_RUNTIME_DIR: tmp };
    // no client: 2 s of frames take 2 s
    const quiet = path.join(tmp, 'quiet.raw');
    let t0 = performance.now();
    const a = await run('arecord', ['-D', 'audioloop:LOOP=0,CLOCK=1', '-t', 'raw', '-f', 'S16_LE', '-r', '48000', '-c', '2', '-d', '2', quiet], { env, timeoutMs: 15000 });
    let took = performance.now() - t0;
    assert.equal(a.code, 0, a.stderr);
    const q = fs.readFileSync(quiet);
    assert.equal(q.length, 2 * RATE * FRAME);
    assert.ok(q.every((x) => x === 0), 'silence');
    process.stderr.write(`      [measured] arecord CLOCK=1 -d 2, no client: ${(q.length / FRAME / (took / 1000)).toFixed(1)} frames/s (${took.toFixed(0)} ms)\n`);
    assert.ok(took >= 1900 && took < 3000, `2 s of silence in ${took.toFixed(0)} ms`);
    const opened = logLines.find((l) => /server arecord pid \d+ opened read .* clock=1\)/.test(l));
    assert.ok(opened, 'arecord opened with clock=1');
    // a client after 1 s: silence, then its tone
    const out = path.join(tmp, 'a.raw');
    const ar = spawnTracked('arecord', ['-D', 'audioloop:LOOP=0,CLOCK=1', '-t', 'raw', '-f', 'S16_LE', '-r', '48000', '-c', '2', out], { env });
    await waitFor(async () => (await fetchStatus(dir)).loops[0]!.clock?.running, 10000, 'the clock runs');
    await sleep(1000);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=100', tone]);
    assert.equal((await finished(play, 20000, 'paplay')).code, 0);
    const r = await finished(ar, 20000, 'arecord');
    assert.equal(r.code, 1, r.stderr); // the end of the stream: "read error: No such device"
    const pcm = fs.readFileSync(out);
    const t = analyzeTone(pcm, S16);
    assert.ok(t.start >= RATE * 0.9, `silence before the client: ${t.start} frames`);
    assertTone(pcm, 'arecord CLOCK=1');
    // playback with no client: consumed in real time, aplay's drain returns when it is
    t0 = performance.now();
    const ap = await run('aplay', ['-D', 'audioloop:LOOP=1,CLOCK=1', tone], { env, timeoutMs: 15000 });
    took = performance.now() - t0;
    assert.equal(ap.code, 0, ap.stderr);
    process.stderr.write(`      [measured] aplay CLOCK=1 of 1 s, no client: exit 0 after ${took.toFixed(0)} ms\n`);
    assert.ok(took >= 900 && took < 4000, `consumed in real time: ${took.toFixed(0)} ms`);
    const bad = await run('arecord', ['-D', 'audioloop:LOOP=0,CLOCK=2', '-d', '1', '/dev/null'], { env });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /clock must be 0 .* or 1/);
  });
});
