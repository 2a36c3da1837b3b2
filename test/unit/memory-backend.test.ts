/**
 * The in-memory backend's own behaviour (ring rounding, batched events,
 * mixing and conversion, loss, its test hooks). What it shares with the
 * real backends is the backend contract (test/contract/backend-contract.ts),
 * run on it by backend-contract.test.ts and on PipeWire and PulseAudio by
 * the integration suite, so unit tests over it mean something.
 */
import assert from 'node:assert/strict';
import { MemoryBackend, MemoryClock } from '../../src/backend/memory';
import type { EndpointOptions } from '../../src/backend/types';
import { EndpointReadable, EndpointWritable } from '../../src/endpoint-stream';
import { counterPcm } from '../helpers/pcm';

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function opts(direction: 'sink' | 'source', over: Partial<EndpointOptions> = {}): EndpointOptions {
  return { direction, name: 'n0', description: 'test', format: 's16le', rate: 48000, channels: 2, ringBytes: 5000, ...over };
}

describe('memory backend', function () {
  it('refuses bad formats with EINVAL, anything after close with EBADF, after a loss with EPIPE', function () {
    const b = new MemoryBackend();
    assert.throws(() => b.createEndpoint(opts('sink', { rate: 1000 })), { code: 'EINVAL' });
    assert.throws(() => b.createEndpoint(opts('sink', { channels: 9 })), { code: 'EINVAL' });
    assert.throws(() => b.createEndpoint(opts('sink', { ringBytes: 10 })), { code: 'EINVAL' });
    const lost = new MemoryBackend();
    const errs: Error[] = [];
    const ep = lost.createEndpoint(opts('sink'));
    ep.on('error', (e: Error) => errs.push(e));
    let disconnected = 0;
    lost.on('disconnected', () => disconnected++);
    lost.lose();
    lost.lose();
    assert.equal(disconnected, 1);
    assert.ok(ep.destroyed);
    assert.equal(errs.length, 1);
    assert.equal((errs[0] as Error & { code: string }).code, 'EPIPE');
    assert.equal(lost.connected, false);
    assert.throws(() => lost.createEndpoint(opts('sink')), { code: 'EPIPE' });
    b.close();
    assert.throws(() => b.createEndpoint(opts('sink')), { code: 'EBADF' });
  });

  it('rounds the ring up to a power of two; read on a source / write on a sink EINVAL; EBADF after destroy', function () {
    const b = new MemoryBackend();
    const sink = b.createEndpoint(opts('sink'));
    const src = b.createEndpoint(opts('source', { name: 'n1' }));
    assert.equal(sink.stats().size, 8192);
    assert.throws(() => src.read(Buffer.alloc(4)), { code: 'EINVAL' });
    assert.throws(() => sink.write(Buffer.alloc(4)), { code: 'EINVAL' });
    assert.equal(src.write(Buffer.alloc(10)), 8, 'whole frames only');
    assert.equal(src.write(Buffer.alloc(100000)), 8192 - 8, 'no more than the ring');
    sink.destroy();
    sink.destroy();
    assert.throws(() => sink.read(Buffer.alloc(4)), { code: 'EBADF' });
    assert.equal(sink.stats().state, 'destroyed');
    assert.equal(b.endpoint('n0'), undefined);
    assert.equal(b.endpoint('n1'), src);
  });

  it('a sink that failed hands out what it had captured, then 0; an explicitly destroyed one is EBADF', async function () {
    const b = new MemoryBackend({ quantum: 1024 });
    const ep = b.createEndpoint(opts('sink', { ringBytes: 8192 }));
    ep.on('error', () => undefined);
    const c = ep.connectClient().start();
    await settle();
    const pcm = counterPcm('s16le', 2, 1500);
    c.play(pcm);
    b.clock.step(2);
    assert.equal(ep.stats().fill, 6000);
    b.lose();
    assert.ok(ep.destroyed);
    assert.equal(ep.stats().fill, 6000, 'still there after the failure');
    const buf = Buffer.alloc(4001); // not whole frames: 4000 taken
    assert.equal(ep.read(buf), 4000);
    assert.deepEqual(buf.subarray(0, 4000), pcm.subarray(0, 4000));
    assert.equal(ep.read(buf), 2000);
    assert.deepEqual(buf.subarray(0, 2000), pcm.subarray(4000, 6000));
    assert.equal(ep.read(buf), 0, 'then nothing');
    const other = new MemoryBackend().createEndpoint(opts('sink'));
    other.destroy();
    assert.throws(() => other.read(buf), { code: 'EBADF' });
  });

  it('sink: events in order, clientActive changes when delivered, overruns counted, whole frames read', async function () {
    const b = new MemoryBackend({ quantum: 1024 });
    const ep = b.createEndpoint(opts('sink', { ringBytes: 8192, wakeBytes: 4096 }));
    const events: string[] = [];
    for (const e of ['client-start', 'client-stop', 'readable', 'clients']) ep.on(e, () => events.push(e));
    const c = ep.connectClient({ appName: 'paplay', pid: 7 });
    c.start();
    assert.equal(ep.clientActive, false, 'not before the event is delivered');
    await settle();
    assert.equal(ep.clientActive, true);
    assert.deepEqual(events, ['clients', 'client-start']);
    assert.deepEqual(ep.clients().map((x) => [x.appName, x.pid]), [['paplay', 7]]);
    c.play(counterPcm('s16le', 2, 3000)); // 12000 bytes into an 8192-byte ring
    b.clock.step(3);
    const st = ep.stats();
    assert.equal(st.fill, 8192);
    assert.equal(st.xruns, 1);
    assert.equal(st.xrunBytes, 12000 - 8192);
    await settle();
    assert.deepEqual(events.slice(2), ['readable'], 'one batched wake-up');
    const buf = Buffer.alloc(4099);
    assert.equal(ep.read(buf), 4096);
    c.disconnect();
    await settle();
    assert.deepEqual(events.slice(3), ['readable', 'client-stop', 'clients'], 'stops, then unlinks');
    assert.equal(ep.clientActive, false);
  });

  it('source: silence on underrun, counted once per gap and only after a write; the writable wake-up', async function () {
    const clock = new MemoryClock(256);
    const b = new MemoryBackend({ clock });
    const ep = b.createEndpoint(opts('source', { format: 'u8', channels: 1, ringBytes: 1024, wakeBytes: 512 }));
    const c = ep.connectClient().start();
    clock.step(2);
    assert.deepEqual([ep.stats().xruns, c.recorded().length], [0, 512], 'no underrun before the first write');
    assert.ok(c.takeRecorded().every((x) => x === 0x80), 'u8 silence');
    let writable = 0;
    ep.on('writable', () => writable++);
    assert.equal(ep.write(Buffer.alloc(2000, 1)), 1024);
    clock.step(1);
    clock.step(1);
    await settle();
    assert.equal(writable, 1);
    clock.step(3);
    assert.equal(ep.stats().xruns, 1);
    assert.equal(ep.stats().xrunBytes, 256);
    const rec = c.takeRecorded();
    assert.equal(rec.length, 5 * 256);
    assert.equal(rec.subarray(0, 1024).every((x) => x === 1), true);
    assert.equal(rec.subarray(1024).every((x) => x === 0x80), true);
  });

  it('mixes two players, converts another client format, refuses another rate', function () {
    const b = new MemoryBackend({ quantum: 4 });
    const ep = b.createEndpoint(opts('sink', { channels: 1 }));
    const a = ep.connectClient().start();
    const f = ep.connectClient({ format: 'f32le' }).start();
    const pa = Buffer.alloc(8);
    for (let i = 0; i < 4; i++) pa.writeInt16LE(1000 * (i + 1), i * 2);
    const pf = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) pf.writeFloatLE(0.25, i * 4);
    a.play(pa);
    f.play(pf);
    b.clock.step();
    const out = Buffer.alloc(8);
    assert.equal(ep.read(out), 8);
    assert.deepEqual([0, 1, 2, 3].map((i) => out.readInt16LE(i * 2)), [1, 2, 3, 4].map((k) => 1000 * k + 8192));
    assert.throws(() => ep.connectClient({ rate: 44100 }), { code: 'EINVAL' });
  });

  it('disconnectClients ends clients; destroy with clients linked orphans them (what a session manager would move)', async function () {
    const b = new MemoryBackend();
    const ep = b.createEndpoint(opts('sink'));
    const one = ep.connectClient().start();
    await ep.disconnectClients();
    assert.equal(one.state, 'ended');
    const two = ep.connectClient().start();
    ep.destroy();
    assert.equal(two.state, 'orphaned');
    assert.throws(() => two.start(), { code: 'EPIPE' });
  });

  it('drives EndpointReadable like the real backend', async function () {
    const b = new MemoryBackend({ quantum: 512 });
    const ep = b.createEndpoint(opts('sink', { ringBytes: 1 << 16 }));
    const r = new EndpointReadable(ep, { endOnClientStop: true });
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise((res) => r.on('end', res));
    const c = ep.connectClient().start();
    await settle();
    const pcm = counterPcm('s16le', 2, 4096);
    c.play(pcm);
    b.clock.step(8);
    c.stop();
    await ended;
    assert.ok(Buffer.concat(chunks).equals(pcm));
  });

  it('EndpointWritable: finish only once the node has moved every byte to the client (woken by the node, no polling)', async function () {
    const b = new MemoryBackend({ quantum: 512 });
    const ep = b.createEndpoint(opts('source', { ringBytes: 1 << 16 }));
    const c = ep.connectClient().start();
    await settle();
    const w = new EndpointWritable(ep);
    let finished = false;
    w.on('finish', () => (finished = true));
    const pcm = counterPcm('s16le', 2, 4096);
    w.end(pcm);
    await settle();
    b.clock.step(4); // 2048 of 4096 frames moved
    await settle();
    assert.equal(finished, false, 'half the ring still to go');
    assert.ok(ep.stats().fill > 0);
    b.clock.step(4);
    await settle();
    await settle();
    assert.equal(finished, true, 'the ring is empty');
    assert.ok(c.recorded().subarray(0, pcm.length).equals(pcm), 'the client got every byte in order');
    ep.destroy();
  });
});
