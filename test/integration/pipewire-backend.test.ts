/**
 * The native PipeWire binding against a real headless PipeWire, with real
 * clients (paplay, parecord, pactl). Nothing here is mocked.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';
import { PipeWireBackend } from '../../src/backend/pipewire';
import { loadNative } from '../../src/native';
import type { Endpoint, EndpointOptions } from '../../src/backend/types';
import { EndpointReadable, EndpointWritable } from '../../src/endpoint-stream';
import { frameBytes, type SampleFormat } from '../../src/format';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, waitFor } from '../helpers/proc';
import { checkCounter, counterPcm } from '../helpers/pcm';

async function pactlShort(kind: 'sinks' | 'sources'): Promise<string[][]> {
  const r = await run('pactl', ['list', 'short', kind]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'));
}

let seq = 0;
function uniqueName(): string {
  return `audioloop_t${process.pid}_${seq++}`;
}

function opts(direction: 'sink' | 'source', format: SampleFormat, rate: number, channels: number): EndpointOptions {
  const name = uniqueName();
  return { direction, name, description: `test ${name}`, format, rate, channels, ringBytes: 1 << 18 };
}

describe('PipeWire backend (real headless PipeWire)', function () {
  this.timeout(40000);
  let backend: PipeWireBackend;
  let tmp: string;
  const endpoints: Endpoint[] = [];

  before(requireSoundServer);
  before(function () {
    backend = new PipeWireBackend({ appName: 'audioloop-test' });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-pw-'));
  });
  afterEach(function () {
    for (const ep of endpoints.splice(0)) ep.destroy();
  });
  after(function () {
    backend?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function create(o: EndpointOptions): Endpoint {
    const ep = backend.createEndpoint(o);
    endpoints.push(ep);
    return ep;
  }

  for (const [format, rate, channels, pulse] of [
    ['s16le', 48000, 2, 's16le 2ch 48000Hz'],
    ['f32le', 44100, 1, 'float32le 1ch 44100Hz'],
    ['s24le', 96000, 6, 's24le 6ch 96000Hz'],
    ['u8', 8000, 1, 'u8 1ch 8000Hz'],
    ['s32le', 192000, 8, 's32le 8ch 192000Hz'],
  ] as const) {
    it(`a ${format} ${channels}ch ${rate} Hz sink appears in pactl with that format and goes on destroy`, async function () {
      const o = opts('sink', format, rate, channels);
      const ep = create(o);
      const row = await waitFor(async () => (await pactlShort('sinks')).find((r) => r[1] === o.name), 5000, 'the sink in pactl');
      assert.equal(row[3], pulse);
      ep.destroy();
      ep.destroy(); // idempotent
      await waitFor(async () => !(await pactlShort('sinks')).some((r) => r[1] === o.name), 5000, 'the sink to vanish');
    });
  }

  it('a source appears in pactl list short sources (not as a sink)', async function () {
    const o = opts('source', 's16le', 48000, 2);
    create(o);
    const row = await waitFor(async () => (await pactlShort('sources')).find((r) => r[1] === o.name), 5000, 'the source');
    assert.equal(row[3], 's16le 2ch 48000Hz');
    assert.ok(!(await pactlShort('sinks')).some((r) => r[1] === o.name));
  });

  for (const format of ['s16le', 'f32le'] as const) {
    it(`paplay of a ${format} counter pattern arrives sample-exact, with start/stop events`, async function () {
      const channels = 2;
      const rate = 48000;
      const o = opts('sink', format, rate, channels);
      const ep = create(o);
      const events: string[] = [];
      ep.on('client-start', () => events.push('start'));
      ep.on('client-stop', () => events.push('stop'));
      let sawPaplay = false;
      ep.on('clients', (list: { appName: string | null }[]) => {
        if (list.some((c) => c.appName === 'paplay')) sawPaplay = true;
      });
      await waitFor(async () => (await pactlShort('sinks')).some((r) => r[1] === o.name), 5000, 'sink');
      const frames = rate; // one second
      const file = path.join(tmp, `counter-${format}.raw`);
      fs.writeFileSync(file, counterPcm(format, channels, frames));
      const reader = new EndpointReadable(ep, { endOnClientStop: true });
      const chunks: Buffer[] = [];
      reader.on('data', (c: Buffer) => chunks.push(c));
      const ended = once(reader, 'end');
      const play = await run('paplay', ['--raw', `--format=${format === 'f32le' ? 'float32le' : format}`, `--rate=${rate}`, `--channels=${channels}`, '-d', o.name, file]);
      assert.equal(play.code, 0, play.stderr);
      await ended;
      const got = Buffer.concat(chunks);
      assert.equal(got.length % frameBytes(o), 0);
      const c = checkCounter(got, format, channels);
      assert.equal(c.first, 0, 'the first frame played is the first frame read');
      assert.equal(c.frames, frames, `every frame arrives once and in order: ${JSON.stringify(c)}`);
      assert.equal(c.bad, 0, 'nothing but silence after the pattern');
      assert.deepEqual(events, ['start', 'stop']);
      assert.ok(sawPaplay, 'paplay was listed as a client while playing');
      assert.equal(ep.stats().xruns, 0);
    });
  }

  it('a source written from JS is recorded by parecord sample-exact', async function () {
    const channels = 2;
    const rate = 48000;
    const o = opts('source', 's16le', rate, channels);
    const ep = create(o);
    await waitFor(async () => (await pactlShort('sources')).some((r) => r[1] === o.name), 5000, 'source');
    const frames = rate / 2;
    const writer = new EndpointWritable(ep);
    const file = path.join(tmp, 'rec.raw');
    // a small latency: parecord otherwise holds up to 2 s in the server and loses it on exit
    const rec = spawnTracked('parecord', ['--raw', '--latency-msec=20', '--format=s16le', `--rate=${rate}`, `--channels=${channels}`, '-d', o.name, file]);
    await waitFor(() => ep.clientActive, 5000, 'parecord to start');
    await new Promise<void>((resolve, reject) => writer.end(counterPcm('s16le', channels, frames), (e?: Error | null) => (e ? reject(e) : resolve())));
    // wait until the whole run (and a little silence) is in the file
    await waitFor(() => fs.existsSync(file) && checkCounter(fs.readFileSync(file), 's16le', channels).tail > 0, 5000, 'parecord to record the pattern');
    process.kill(rec.pid, 'SIGINT');
    await rec.done;
    const got = fs.readFileSync(file);
    const c = checkCounter(got, 's16le', channels);
    assert.equal(c.first, 0);
    assert.equal(c.frames, frames, JSON.stringify(c));
    assert.equal(c.bad, 0);
  });

  it('reports xruns when JS does not read a sink', async function () {
    const o = { ...opts('sink', 's16le', 48000, 2), ringBytes: 4096 };
    const ep = create(o);
    await waitFor(async () => (await pactlShort('sinks')).some((r) => r[1] === o.name), 5000, 'sink');
    const file = path.join(tmp, 'half.raw');
    fs.writeFileSync(file, counterPcm('s16le', 2, 24000));
    const play = await run('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', o.name, file]);
    assert.equal(play.code, 0, play.stderr);
    const st = ep.stats();
    assert.ok(st.xruns > 0, `xruns counted: ${JSON.stringify(st)}`);
    assert.ok(st.xrunBytes >= 24000 * 4 - 4096, `dropped bytes counted: ${st.xrunBytes}`);
    assert.equal(st.fill, 4096, 'the ring is full, never more');
  });

  it('refuses invalid formats with EINVAL', function () {
    assert.throws(() => backend.createEndpoint({ ...opts('sink', 's16le', 48000, 2), rate: 1000 }), { code: 'EINVAL' });
    assert.throws(() => backend.createEndpoint({ ...opts('sink', 's16le', 48000, 2), channels: 9 }), { code: 'EINVAL' });
    assert.throws(() => backend.createEndpoint({ ...opts('sink', 's16le', 48000, 2), format: 'mp3' as SampleFormat }), { code: 'EINVAL' });
  });

  it('read on a source and write on a sink are EINVAL; after destroy EBADF', function () {
    const sink = create(opts('sink', 's16le', 48000, 2));
    const src = create(opts('source', 's16le', 48000, 2));
    assert.throws(() => src.read(Buffer.alloc(4)), { code: 'EINVAL' });
    assert.throws(() => sink.write(Buffer.alloc(4)), { code: 'EINVAL' });
    sink.destroy();
    assert.throws(() => sink.read(Buffer.alloc(4)), { code: 'EBADF' });
  });
});

describe('native handles close in any order (real headless PipeWire)', function () {
  this.timeout(20000);
  before(requireSoundServer);

  const streamOpts = (name: string) => ({ direction: 'sink' as const, name, format: 's16le', rate: 48000, channels: 2, ringBytes: 4096 });

  it('a stream destroyed, read and measured after its core closed; double closes; a handle of the wrong kind is EBADF', function () {
    const native = loadNative();
    const core = native.coreOpen(() => undefined, 'audioloop-test-lifetimes');
    assert.notEqual(typeof core, 'number', 'coreOpen');
    if (typeof core === 'number') return;
    const stream = native.streamCreate(core, streamOpts(uniqueName()), () => undefined);
    assert.notEqual(typeof stream, 'number', 'streamCreate');
    if (typeof stream === 'number') return;
    const cable = native.cableCreate({ direction: 'source', format: 's16le', rate: 48000, channels: 2 }, () => undefined);
    assert.notEqual(typeof cable, 'number', 'cableCreate');
    if (typeof cable === 'number') return;
    native.coreClose(core); // the parent first: the stream's node goes with it
    assert.equal(native.streamStats(stream).state, 'destroyed');
    assert.equal(native.streamRead(stream, Buffer.alloc(4)), 0, 'the ring outlives the node');
    native.streamDestroy(stream);
    native.streamDestroy(stream);
    native.coreClose(core);
    assert.equal(native.coreConnected(core), false);
    assert.deepEqual(native.coreNodes(core), []);
    assert.equal(native.streamCreate(core, streamOpts(uniqueName()), () => undefined), -9 /* EBADF */);
    // handles are type-tagged: one kind passed for another is refused, not misread
    assert.equal(native.cableStats(stream as never), -9);
    assert.equal(native.streamRead(cable as never, Buffer.alloc(4)), -9);
    assert.equal(native.coreConnected(cable as never), false);
    assert.equal(native.cableLine(cable, 'X\n'), -9, 'no fd plugged');
    native.cableClose(cable);
    native.cableClose(cable);
  });
});
