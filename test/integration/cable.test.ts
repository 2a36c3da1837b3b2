/**
 * The native cable's fd mode end to end (native/cable.c): a unix socket's
 * fd handed to the cable (cablePlug, with the bytes read past the OPEN
 * line), the JS socket destroyed, and then PCM between the sound server and
 * that fd without JS: protocol lines (cableLine/cableStart/cableFinish) in
 * order around the PCM, the data events (first, eof, drained, finished,
 * error) and the counters. Real paplay/parecord clients on this run's sound
 * server, the node a native stream on the cable.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, type CableEventKind, type CableHandle, type CoreHandle, type NativeBinding, type StreamHandle } from '../../src/native';
import { frameBytes, type PcmFormat } from '../../src/format';
import { pulseToolsDriver } from '../contract/pulse-driver';
import { checkCounter, checkCounterSkippingSilence, counterPcm } from '../helpers/pcm';
import { sleep, waitFor } from '../helpers/proc';
import { onPulseAudio, requireSoundServer } from '../helpers/soundserver';

const FMT: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
const FB = frameBytes(FMT);

let seq = 0;

/** the two ends of a unix stream connection: `ours` (the daemon's, to be plugged) and `peer` (the server program's) */
async function socketPair(dir: string): Promise<{ ours: net.Socket; peer: net.Socket; close: () => void }> {
  const file = path.join(dir, `pair-${seq++}.sock`);
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => srv.listen(file, r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const peer = net.connect({ path: file, allowHalfOpen: true });
  const ours = await accepted;
  peer.on('error', () => undefined); // a reset peer is what some tests do
  return { ours, peer, close: () => srv.close() };
}

function fdOf(sock: net.Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  assert.ok(typeof fd === 'number' && fd >= 0, 'the socket has an fd');
  return fd;
}

/** what the peer receives, and its EOF */
function collect(peer: net.Socket): { data: () => Buffer; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  peer.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => peer.once('end', () => r()));
  return { data: () => Buffer.concat(chunks), ended };
}

describe('native cable fd mode (real sound server, paplay/parecord)', function () {
  this.timeout(30000);
  let native: NativeBinding;
  let core: CoreHandle;
  let tmp: string;
  let driver: ReturnType<typeof pulseToolsDriver>;
  const cleanups: (() => void)[] = [];

  before(function () {
    requireSoundServer.call(this);
    native = loadNative();
    const c = native.coreOpen(() => undefined, 'audioloop-test-cable', onPulseAudio() ? 'pulseaudio' : 'pipewire');
    assert.notEqual(typeof c, 'number', 'coreOpen');
    core = c as CoreHandle;
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-cable-'));
    driver = pulseToolsDriver();
  });

  afterEach(() => {
    for (const f of cleanups.splice(0)) f();
  });

  after(() => {
    if (core) native.coreClose(core);
    driver?.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function cableWithNode(direction: 'sink' | 'source', name: string, ringBytes: number) {
    const events: { kind: CableEventKind; err: number }[] = [];
    const waiters: { kind: CableEventKind; resolve: (err: number) => void }[] = [];
    const cable = native.cableCreate({ direction, ...FMT, ringBytes }, (kind, err) => {
      events.push({ kind, err });
      for (const w of waiters.filter((x) => x.kind === kind)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(err);
      }
    });
    assert.notEqual(typeof cable, 'number', 'cableCreate');
    const links = { all: 0, active: 0, state: '' };
    const stream = native.streamCreate(
      core,
      { direction, name, description: name, ...FMT, ringBytes },
      (kind, a, b) => {
        if (kind === 'links') {
          links.all = Number(a);
          links.active = Number(b);
        } else if (kind === 'state') links.state = String(a);
      },
      cable as CableHandle,
    );
    assert.notEqual(typeof stream, 'number', 'streamCreate');
    cleanups.push(() => {
      native.streamDestroy(stream as StreamHandle);
      native.cableClose(cable as CableHandle);
    });
    const next = (kind: CableEventKind): Promise<number> => {
      const seen = events.find((e) => e.kind === kind);
      if (seen) return Promise.resolve(seen.err);
      return new Promise((resolve) => waiters.push({ kind, resolve }));
    };
    return { cable: cable as CableHandle, stream: stream as StreamHandle, events, next, links };
  }

  it('playback: bytes past the OPEN line and the socket reach a recording client in order; OK, START, RESET around them; eof, drained, finished', async function () {
    const name = `audioloop_cable_${process.pid}_${seq++}`;
    const { cable, events, next } = cableWithNode('source', name, 1 << 16);
    const pair = await socketPair(tmp);
    cleanups.push(pair.close);
    const got = collect(pair.peer);
    const frames = 24000; // 0.5 s
    const pcm = counterPcm(FMT.format, FMT.channels, frames);
    const rest = pcm.subarray(0, 100 * FB); // what the daemon read past the OPEN line
    assert.equal(native.cablePlug(cable, fdOf(pair.ours), rest, 1 << 14), 0);
    assert.equal(native.cablePlug(cable, fdOf(pair.ours), null, 0), -16 /* EBUSY */, 'one fd per cable');
    pair.ours.destroy(); // libuv no longer reads it; the cable has its own dup
    assert.equal(native.cableLine(cable, 'OK test\n'), 0);
    pair.peer.write(pcm.subarray(rest.length));
    pair.peer.end();
    // before START nothing enters the ring (the server is held at its socket); the read-ahead (to see an EOF) stops at `hold`
    await waitFor(() => native.cableStats(cable).queued >= 1 << 14, 5000, 'read-ahead up to hold');
    const held = native.cableStats(cable);
    assert.deepEqual({ fill: held.fill, fdBytes: held.fdBytes }, { fill: 0, fdBytes: 0 }, 'nothing in the ring before START');
    assert.ok(held.queued <= (1 << 14) + rest.length, `read-ahead bounded by hold (queued ${held.queued})`);
    assert.equal(events.length, 0, 'no event before START');

    const rec = driver.record(name, FMT);
    cleanups.push(() => rec.stop());
    await waitFor(() => (got.data().toString('latin1').startsWith('OK test\n') ? true : null), 5000, 'OK line');
    assert.equal(native.cableStart(cable, 'START app=parecord\n'), 0);
    assert.equal(await next('first'), 0);
    assert.equal(await next('eof'), 0);
    assert.equal(await next('drained'), 0);
    const st = native.cableStats(cable);
    assert.equal(st.fdBytes, pcm.length, 'every PCM byte crossed the fd (the rest included)');
    assert.equal(st.eof, true);
    assert.ok(st.levels.every((l) => l > -60), `the meter saw the counter (${st.levels.join(', ')})`);
    // the recorder's own buffer (20 ms) and a quantum or two: wait for the counter's end
    await waitFor(() => (checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels).frames >= frames ? true : null), 10000, 'all frames recorded').catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels))} of ${rec.data().length / FB}`);
    });
    assert.equal(native.cableFinish(cable, 'RESET\n', false), 0);
    assert.equal(await next('finished'), 0);
    await got.ended;
    rec.stop();
    await rec.done;
    const run = checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels);
    assert.deepEqual({ first: run.first, frames: run.frames, bad: run.bad }, { first: 0, frames, bad: 0 });
    assert.equal(got.data().toString('latin1'), 'OK test\nSTART app=parecord\nRESET\n', 'the lines, in order, nothing else');
    assert.deepEqual(
      events.map((e) => e.kind),
      ['first', 'eof', 'drained', 'finished'],
    );
    assert.equal(native.cableFinish(cable, 'RESET\n', false), -32 /* EPIPE */, 'finish once');
    native.cableClose(cable);
    assert.equal(native.cableStats(cable).fdOpen, false);
  });

  it('playback: START waits for a cycle flowing to a client (none linked: not sent; a recorder links: sent); a finish while held sends START, then RESET', async function () {
    const name = `audioloop_cable_${process.pid}_${seq++}`;
    const { cable, next } = cableWithNode('source', name, 1 << 16);
    const pair = await socketPair(tmp);
    cleanups.push(pair.close);
    const got = collect(pair.peer);
    assert.equal(native.cablePlug(cable, fdOf(pair.ours), null, 1 << 14), 0);
    pair.ours.destroy();
    assert.equal(native.cableStart(cable, 'START app=test\n'), 0);
    assert.equal(native.cableStart(cable, 'START again\n'), -16 /* EBUSY */, 'one START');
    // no client: the node runs no cycle to a client, so the line stays held
    await sleep(400);
    assert.equal(got.data().toString('latin1'), '', 'nothing before a client flows');
    const rec = driver.record(name, FMT);
    cleanups.push(() => rec.stop());
    await waitFor(() => (got.data().toString('latin1') === 'START app=test\n' ? true : null), 5000, 'START once the recorder flows');
    rec.stop();
    await rec.done;
    assert.equal(native.cableFinish(cable, 'RESET\n', false), 0);
    assert.equal(await next('finished'), 0);
    await got.ended;
    assert.equal(got.data().toString('latin1'), 'START app=test\nRESET\n');

    // held and never released by a client: the finish sends it first
    const other = cableWithNode('source', `${name}_b`, 1 << 16);
    const p2 = await socketPair(tmp);
    cleanups.push(p2.close);
    const got2 = collect(p2.peer);
    assert.equal(native.cablePlug(other.cable, fdOf(p2.ours), null, 1 << 14), 0);
    p2.ours.destroy();
    assert.equal(native.cableStart(other.cable, 'START\n'), 0);
    assert.equal(native.cableFinish(other.cable, 'RESET\n', false), 0);
    assert.equal(await other.next('finished'), 0);
    await got2.ended;
    assert.equal(got2.data().toString('latin1'), 'START\nRESET\n', 'in order');
  });

  it('playback cableConsume (clock=1): discards whole frames of what the server sent, oldest first (held, then the fd), never what it has not sent; a client then records the rest in order', async function () {
    const name = `audioloop_cable_${process.pid}_${seq++}`;
    const { cable, events, next } = cableWithNode('source', name, 1 << 16);
    const pair = await socketPair(tmp);
    cleanups.push(pair.close);
    const frames = 40000;
    const pcm = counterPcm(FMT.format, FMT.channels, frames);
    const restFrames = 100;
    assert.equal(native.cablePlug(cable, fdOf(pair.ours), pcm.subarray(0, restFrames * FB), 1 << 14), 0);
    pair.ours.destroy();
    // only the bytes past the OPEN line are there: they go, the rest of the 5000 frames is not owed
    assert.equal(native.cableConsume(cable, 5000 * FB), restFrames * FB);
    await new Promise((r) => setTimeout(r, 100)); // [io] tried the fd meanwhile (EAGAIN: the debt is dropped)
    assert.equal(native.cableStats(cable).consumed, restFrames * FB);
    await new Promise<void>((r) => pair.peer.write(pcm.subarray(restFrames * FB), () => r())); // all of it in the kernel
    pair.peer.end();
    await waitFor(() => native.cableStats(cable).queued >= 1 << 14, 5000, 'read-ahead up to hold');
    // whole frames only: 3 bytes more are not a frame
    assert.equal(native.cableConsume(cable, 1000 * FB + 3), 1000 * FB);
    // more than is held: the held frames now, the rest by [io] from what the fd has
    const now = native.cableConsume(cable, 19900 * FB);
    assert.ok(now > 0 && now <= 1 << 14 && now % FB === 0, `held part ${now}`);
    const gone = restFrames + 1000 + 19900;
    await waitFor(() => native.cableStats(cable).consumed === gone * FB, 5000, `${gone} frames consumed`).catch((e) => {
      throw new Error(`${(e as Error).message}: ${native.cableStats(cable).consumed / FB}`);
    });
    const held = native.cableStats(cable);
    assert.deepEqual({ fill: held.fill, fdBytes: held.fdBytes }, { fill: 0, fdBytes: 0 }, 'nothing entered the ring');
    assert.equal(events.length, 0, 'no event before START');
    assert.equal(native.cableConsume(cable, 4097), 4096, 'one frame more, whole frames');
    const consumed = gone + 1024;
    await waitFor(() => native.cableStats(cable).consumed === consumed * FB, 5000, 'consumed');

    const rec = driver.record(name, FMT);
    cleanups.push(() => rec.stop());
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(native.cableStart(cable, 'START\n'), 0);
    assert.equal(native.cableConsume(cable, 1000 * FB), 0, 'nothing is consumed after START');
    assert.equal(await next('eof'), 0);
    assert.equal(await next('drained'), 0);
    const rest = frames - consumed;
    await waitFor(() => (checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels).frames >= rest ? true : null), 10000, 'the rest recorded').catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels))}`);
    });
    rec.stop();
    await rec.done;
    const run = checkCounterSkippingSilence(rec.data(), FMT.format, FMT.channels);
    assert.deepEqual({ first: run.first, frames: run.frames, bad: run.bad }, { first: consumed, frames: rest, bad: 0 }, 'from the first frame not consumed, every frame, in order');
    const st = native.cableStats(cable);
    assert.equal(st.consumed, consumed * FB);
    assert.equal(st.fdBytes, rest * FB, 'what was not consumed crossed to the ring');
    // a capture cable has nothing to consume
    const sink = cableWithNode('sink', `audioloop_cable_${process.pid}_${seq++}`, 1 << 16);
    const p2 = await socketPair(tmp);
    cleanups.push(p2.close);
    assert.equal(native.cablePlug(sink.cable, fdOf(p2.ours), null, 0), 0);
    p2.ours.destroy();
    assert.equal(native.cableConsume(sink.cable, 4096), -22 /* EINVAL */);
  });

  it('capture: a playing client reaches the fd bit-exact after START; finish with drain delivers the ring, then EOF', async function () {
    const name = `audioloop_cable_${process.pid}_${seq++}`;
    const { cable, events, next, links } = cableWithNode('sink', name, 1 << 18);
    const pair = await socketPair(tmp);
    cleanups.push(pair.close);
    const got = collect(pair.peer);
    assert.equal(native.cablePlug(cable, fdOf(pair.ours), null, 0), 0);
    pair.ours.destroy();
    assert.equal(native.cableLine(cable, 'OK\n'), 0);
    const frames = 24000;
    const pcm = counterPcm(FMT.format, FMT.channels, frames, 5);
    const play = driver.play(name, FMT, pcm);
    cleanups.push(() => play.stop());
    await waitFor(() => (links.active > 0 ? true : null), 10000, 'the client link active');
    // what was captured before START stays in the ring
    assert.equal(got.data().toString('latin1'), 'OK\n');
    assert.equal(native.cableStart(cable, 'START\n'), 0);
    assert.equal(await next('first'), 0);
    const done = await play.done;
    assert.equal(done.code, 0, done.stderr);
    await waitFor(() => (links.all === 0 ? true : null), 10000, 'the client gone');
    assert.equal(native.cableFinish(cable, null, true), 0);
    assert.equal(await next('finished'), 0);
    await got.ended;
    const all = got.data();
    assert.equal(all.subarray(0, 9).toString('latin1'), 'OK\nSTART\n');
    const body = all.subarray(9);
    const c = checkCounter(body, FMT.format, FMT.channels);
    assert.deepEqual({ first: c.first, frames: c.frames, bad: c.bad }, { first: 5, frames, bad: 0 });
    assert.equal(native.cableStats(cable).fdBytes, body.length, 'fdBytes counts the PCM');
    assert.deepEqual(
      events.map((e) => e.kind),
      ['first', 'finished'],
    );
  });

  it('a reading server that goes away: eof; a writing one reset by the peer: eof; lines after finish are EPIPE', async function () {
    const name = `audioloop_cable_${process.pid}_${seq++}`;
    const sink = cableWithNode('sink', name, 1 << 14);
    const pair = await socketPair(tmp);
    cleanups.push(pair.close);
    assert.equal(native.cablePlug(sink.cable, fdOf(pair.ours), null, 0), 0);
    pair.ours.destroy();
    pair.peer.destroy();
    assert.equal(await sink.next('eof'), 0);
    assert.equal(native.cableStats(sink.cable).eof, true);

    const src = cableWithNode('source', `${name}_w`, 1 << 14);
    const p2 = await socketPair(tmp);
    cleanups.push(p2.close);
    assert.equal(native.cablePlug(src.cable, fdOf(p2.ours), null, 0), 0);
    p2.ours.destroy();
    p2.peer.write(Buffer.alloc(64 * FB, 1));
    p2.peer.end();
    assert.equal(await src.next('eof'), 0);
    const st = native.cableStats(src.cable);
    assert.deepEqual({ fill: st.fill, queued: st.queued }, { fill: 0, queued: 64 * FB }, 'what came before the EOF is held outside the ring (no START)');
    assert.equal(native.cableFinish(src.cable, 'RESET\n', false), 0);
    assert.equal(await src.next('finished'), 0);
    assert.equal(native.cableLine(src.cable, 'X\n'), -32 /* EPIPE */);
  });
});
