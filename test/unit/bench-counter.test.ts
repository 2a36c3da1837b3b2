/** The bench's measuring parts that need no sound server: counter coding, loss detection, percentiles, PNG CRC. */
import assert from 'node:assert/strict';
import { CounterReader, CounterWriter, encodeFrames, percentile, summarize } from '../../bench/counter';
import { crc32 } from '../../bench/png';

/** A writer whose log says frame k was written at time k (ms), without a timer. */
function fakeWriter(frames: number): CounterWriter {
  const chunks: Buffer[] = [];
  const w = new CounterWriter((b) => chunks.push(b));
  const internals = w as unknown as { logFrame: number[]; logTime: number[]; next: number };
  for (let k = 1; k <= frames; k++) {
    internals.logFrame.push(k);
    internals.logTime.push(k);
  }
  internals.next = frames + 1;
  return w;
}

function feedInPieces(r: CounterReader, buf: Buffer, t: number): void {
  // odd piece sizes: frames split across chunks must still decode
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = [3, 4000, 1, 777, 65][i % 5]!;
    r.feed(buf.subarray(off, off + n), t);
    off += n;
  }
}

describe('bench counter method', () => {
  it('encodes the index in both channels, never as silence, up to 2^30', () => {
    for (const k of [1, 2, 32767, 32768, 32769, 1e6, 2 ** 30 - 1]) {
      const b = encodeFrames(k, 1);
      const l = b.readInt16LE(0);
      const r = b.readInt16LE(2);
      assert.ok(l >= 0 && r >= 0, `non-negative for ${k}`);
      assert.ok(l !== 0 || r !== 0, `not silence for ${k}`);
      assert.equal(r * 32768 + l, k);
    }
  });

  it('counts every frame of a clean run, in any chunking, with no loss', () => {
    const w = fakeWriter(100000);
    const r = new CounterReader(w, 48);
    const silence = Buffer.alloc(4 * 100);
    feedInPieces(r, Buffer.concat([silence, encodeFrames(1, 100000), silence]), 200000);
    assert.deepEqual(r.stats, { frames: 100000, first: 1, last: 100000, lost: 0, duplicated: 0, silenceInserted: 0, leadingSilence: 100 });
    assert.equal(r.missingAtEnd(), 0);
    assert.equal(r.latencies.length, Math.floor(100000 / 48));
    // frame k was "written" at k ms and received at 200000 ms
    assert.equal(r.latencies[0], 200000 - 48);
  });

  it('finds lost, duplicated and missing frames and inserted silence', () => {
    const w = fakeWriter(10000);
    const r = new CounterReader(w);
    const parts = [
      encodeFrames(3, 998), // 3-1000; frames 1-2 never arrived: 2 lost
      encodeFrames(1000, 1), // 1000 again: 1 duplicate
      Buffer.alloc(4 * 64), // silence in the middle
      encodeFrames(1001, 999), // to 1999
      encodeFrames(2512, 7000), // 2000-2511 lost: 512; ends at 9511
    ];
    feedInPieces(r, Buffer.concat(parts), 0);
    assert.equal(r.stats.first, 3);
    assert.equal(r.stats.last, 9511);
    assert.equal(r.stats.lost, 2 + 512);
    assert.equal(r.stats.duplicated, 1);
    assert.equal(r.stats.silenceInserted, 64);
    assert.equal(r.stats.frames, 998 + 1 + 999 + 7000);
    assert.equal(r.missingAtEnd(), 10000 - 9511);
  });

  it('trailing silence is not inserted silence', () => {
    const w = fakeWriter(100);
    const r = new CounterReader(w);
    r.feed(Buffer.concat([encodeFrames(1, 100), Buffer.alloc(400)]));
    assert.equal(r.stats.silenceInserted, 0);
    assert.equal(r.stats.lost, 0);
  });

  it('writer log lookup: the time of the block that carried frame k', () => {
    const w = new CounterWriter(() => undefined);
    const internals = w as unknown as { logFrame: number[]; logTime: number[]; next: number };
    internals.logFrame.push(1, 100, 250);
    internals.logTime.push(10, 20, 30);
    internals.next = 400;
    assert.equal(w.writeTime(1), 10);
    assert.equal(w.writeTime(99), 10);
    assert.equal(w.writeTime(100), 20);
    assert.equal(w.writeTime(399), 30);
    assert.ok(Number.isNaN(w.writeTime(400)));
    assert.ok(Number.isNaN(w.writeTime(0)));
  });

  it('percentiles (nearest rank) and summary', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(xs, 50), 50);
    assert.equal(percentile(xs, 99), 99);
    assert.equal(percentile(xs, 100), 100);
    assert.ok(Number.isNaN(percentile([], 50)));
    const s = summarize([5, 1, 3, 2, 4]);
    assert.deepEqual(s, { samples: 5, p50Ms: 3, p99Ms: 5, minMs: 1, maxMs: 5, meanMs: 3 });
  });

  it('PNG chunk CRC-32 matches the standard check values', () => {
    assert.equal(crc32(Buffer.from('IEND', 'ascii')), 0xae426082);
    assert.equal(crc32(Buffer.from('123456789', 'ascii')), 0xcbf43926);
  });
});
