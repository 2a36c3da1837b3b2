import assert from 'node:assert/strict';
import { JitterBuffer, type JitterOptions, type Popped } from '../../src/bridge/jitter';
import { DriftController, DEFAULT_DRIFT } from '../../src/bridge/drift';
import type { RtpPacket } from '../../src/bridge/rtp';

const TOC_20MS = 31 << 3; // CELT fullband 20 ms, one frame
const FIXED: JitterOptions = { mode: 'fixed', targetMs: 60, minMs: 60, maxMs: 60 };

/** packet number k of a stream starting at seq0/ts0; the payload carries k */
function pkt(k: number, seq0 = 1000, ts0 = 50000): RtpPacket {
  const payload = Buffer.alloc(5);
  payload[0] = TOC_20MS;
  payload.writeUInt32BE(k >>> 0, 1);
  return { payloadType: 96, marker: k === 0, seq: (seq0 + k) & 0xffff, timestamp: (ts0 + 960 * k) >>> 0, ssrc: 1, csrcs: [], payload };
}

function id(p: Popped): string {
  if (p.kind === 'packet') return String(p.payload.readUInt32BE(1));
  return p.kind;
}

function popAll(jb: JitterBuffer, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(id(jb.pop()));
  return out;
}

describe('bridge/jitter: jitter buffer', () => {
  it('buffers up to the target, then plays in order', () => {
    const jb = new JitterBuffer(FIXED);
    jb.push(pkt(0), 0, 960);
    jb.push(pkt(1), 20, 960);
    assert.equal(jb.pop().kind, 'buffering', '40 ms < 60 ms target');
    jb.push(pkt(2), 40, 960);
    assert.equal(jb.fillMs(), 60);
    jb.push(pkt(3), 60, 960);
    assert.deepEqual(popAll(jb, 5), ['0', '1', '2', '3', 'empty']);
    assert.equal(jb.stats().underruns, 1);
  });

  it('reorders', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 2, 1, 4, 3, 5]) jb.push(pkt(k), k * 20, 960);
    assert.deepEqual(popAll(jb, 6), ['0', '1', '2', '3', '4', '5']);
    const s = jb.stats();
    assert.equal(s.reordered, 2);
    assert.equal(s.lost, 0);
  });

  it('conceals a lost packet, offering the next one (for FEC), and drops it as late if it comes after its turn', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 1, 3, 4]) jb.push(pkt(k), k * 20, 960);
    const got = [jb.pop(), jb.pop(), jb.pop(), jb.pop()];
    assert.deepEqual(got.map(id), ['0', '1', 'lost', '3']);
    const lost = got[2]!;
    assert.ok(lost.kind === 'lost');
    assert.equal(lost.samples, 960);
    assert.equal(lost.next?.readUInt32BE(1), 3);
    assert.equal(jb.push(pkt(2), 100, 960), 'late');
    assert.deepEqual(popAll(jb, 1), ['4']);
    const s = jb.stats();
    assert.equal(s.lost, 1);
    assert.equal(s.late, 1);
  });

  it('drops duplicates', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 1, 1, 2, 2, 3]) jb.push(pkt(k), k * 20, 960);
    assert.deepEqual(popAll(jb, 5), ['0', '1', '2', '3', 'empty']);
    assert.equal(jb.stats().duplicates, 2);
    assert.equal(jb.stats().received, 4);
  });

  it('handles sequence-number and timestamp wrap-around, also reordered across the wrap', () => {
    const jb = new JitterBuffer({ mode: 'fixed', targetMs: 160, minMs: 160, maxMs: 160 });
    const seq0 = 0xfffd; // seq wraps after k = 2
    const ts0 = 0x100000000 - 2 * 960; // timestamp wraps at k = 2
    for (const k of [0, 1, 3, 2, 5, 4, 6, 7]) assert.equal(jb.push(pkt(k, seq0, ts0), k * 20, 960), 'ok');
    assert.equal(jb.fillMs(), 160, 'eight 20 ms packets, not a 2^32 sample gap');
    assert.deepEqual(popAll(jb, 8), ['0', '1', '2', '3', '4', '5', '6', '7']);
    const s = jb.stats();
    assert.equal(s.lost, 0);
    assert.equal(s.late, 0);
    assert.equal(s.restarts, 0);
  });

  it('an underrun does not consume a sequence number: a delayed packet still plays', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 1, 2]) jb.push(pkt(k), k * 20, 960);
    assert.deepEqual(popAll(jb, 5), ['0', '1', '2', 'empty', 'empty']);
    assert.equal(jb.push(pkt(3), 120, 960), 'ok');
    assert.deepEqual(popAll(jb, 1), ['3']);
  });

  it('starts over after a long stall, and on a jump in sequence numbers', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 1, 2]) jb.push(pkt(k), k * 20, 960);
    popAll(jb, 3 + 30); // 600 ms of nothing: back to buffering
    assert.equal(jb.playing, false);
    for (const k of [40, 41, 42]) jb.push(pkt(k), 1000 + k, 960);
    assert.deepEqual(popAll(jb, 3), ['40', '41', '42']);
    // a new stream far away in sequence space
    for (const k of [43, 44, 45]) jb.push(pkt(k), 2000, 960);
    assert.equal(jb.push(pkt(20000), 2100, 960), 'restart');
    assert.equal(jb.stats().restarts, 1);
    for (const k of [20001, 20002]) jb.push(pkt(k), 2100, 960);
    assert.deepEqual(popAll(jb, 3), ['20000', '20001', '20002']);
  });

  it('discards the oldest packets when a burst overfills it far past the target', () => {
    const jb = new JitterBuffer(FIXED);
    for (const k of [0, 1, 2]) jb.push(pkt(k), 0, 960);
    popAll(jb, 1);
    for (let k = 3; k < 30; k++) jb.push(pkt(k), 100, 960); // 27 packets at once
    const next = jb.pop();
    assert.ok(next.kind === 'packet');
    assert.ok(next.payload.readUInt32BE(1) > 20, `played from near the newest end (got ${id(next)})`);
    assert.ok(jb.fillMs() <= 60 + 20, `fill back near the target: ${jb.fillMs()}`);
    assert.ok(jb.stats().discarded >= 15);
  });

  it('adaptive target: small for a steady stream, larger with 40 ms of arrival jitter', () => {
    const steady = new JitterBuffer({ mode: 'adaptive', targetMs: 60, minMs: 20, maxMs: 400 });
    const jittery = new JitterBuffer({ mode: 'adaptive', targetMs: 60, minMs: 20, maxMs: 400 });
    let x = 12345;
    const rand = (): number => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let k = 0; k < 250; k++) {
      steady.push(pkt(k), k * 20, 960);
      jittery.push(pkt(k), k * 20 + rand() * 40, 960);
      steady.pop();
      jittery.pop();
    }
    const a = steady.stats();
    const b = jittery.stats();
    assert.ok(a.targetMs >= 20 && a.targetMs <= 45, `steady target ${a.targetMs}`);
    assert.ok(b.targetMs >= 65 && b.targetMs <= 90, `jittery target ${b.targetMs}`);
    assert.ok(a.jitterMs < 0.5, `steady RFC 3550 jitter ${a.jitterMs}`);
    assert.ok(b.jitterMs > 5 && b.jitterMs < 25, `jittery RFC 3550 jitter ${b.jitterMs}`);
  });
});

describe('bridge/drift: the fill controller with the jitter buffer (simulated clocks)', () => {
  /**
   * A sender whose clock runs `driftPpm` fast sends a 20 ms packet every
   * 20 / (1 + drift) ms of our time; the output consumes 48000 (1 + r)
   * input samples per second, r being the controller's correction
   * quantized to 1/65000 steps as the receiver applies it.
   */
  function simulate(driftPpm: number, seconds: number): { ppm: number; fills: number[]; target: number } {
    const jb = new JitterBuffer(FIXED);
    const ctl = new DriftController(DEFAULT_DRIFT);
    const period = 20 / (1 + driftPpm / 1e6);
    let nextSend = 0;
    let k = 0;
    let r = 0;
    let need = 0; // input samples owed to the output
    const fills: number[] = [];
    for (let t = 0; t < seconds * 1000; t += 1) {
      while (nextSend <= t) {
        jb.push(pkt(k++), nextSend, 960);
        nextSend += period;
      }
      need += 48 * (1 + r / 1e6);
      while (need >= 960) {
        need -= 960;
        jb.pop();
      }
      if (t % 10 === 0 && jb.playing) {
        // as the receiver does: once per 10 ms output tick, after production
        const ppm = ctl.update(jb.fillMs(), jb.targetMs, 0.01);
        r = (Math.round((ppm * 65000) / 1e6) * 1e6) / 65000;
        if (t % 1000 === 0) fills.push(jb.fillMs());
      }
    }
    return { ppm: ctl.driftPpm, fills, target: jb.targetMs };
  }

  for (const drift of [300, -500, 0]) {
    it(`a sender ${drift} ppm off: the correction converges to it and the fill stays near the target`, () => {
      const { ppm, fills, target } = simulate(drift, 600);
      const last = fills.slice(-100); // the last 100 s
      const mean = last.reduce((a, b) => a + b, 0) / last.length;
      assert.ok(Math.abs(ppm - drift) < 40, `correction ${ppm.toFixed(1)} ppm for a ${drift} ppm drift`);
      assert.ok(Math.abs(mean - target) < 15, `mean fill ${mean.toFixed(1)} ms, target ${target} ms`);
      assert.ok(Math.max(...last) < target + 40 && Math.min(...last) >= target - 40, `fill range ${Math.min(...last)}..${Math.max(...last)}`);
    });
  }

  it('without correction the same drift walks the buffer off (the controller is what holds it)', () => {
    const jb = new JitterBuffer(FIXED);
    let nextSend = 0;
    let k = 0;
    let need = 0;
    const period = 20 / (1 + 2000 / 1e6); // 2000 ppm fast
    for (let t = 0; t < 60000; t++) {
      while (nextSend <= t) {
        jb.push(pkt(k++), nextSend, 960);
        nextSend += period;
      }
      need += 48;
      while (need >= 960) {
        need -= 960;
        jb.pop();
      }
    }
    // 60 s * 2000 ppm = 120 ms extra: the buffer overflowed its limit and had to discard
    assert.ok(jb.stats().discarded > 0, JSON.stringify(jb.stats()));
  });
});
