import assert from 'node:assert/strict';
import { blockPeaks, PeakMeter, SILENCE_DB, toDb } from '../../src/dsp/level';
import { fromFloat32 } from '../../src/dsp/convert';
import { SAMPLE_FORMATS } from '../../src/format';

/** a stereo sine block: left at amplitude a, right at amplitude b */
function sine(frames: number, a: number, b: number): Float32Array {
  const f = new Float32Array(frames * 2);
  for (let i = 0; i < frames; i++) {
    f[2 * i] = a * Math.sin((2 * Math.PI * i) / 48);
    f[2 * i + 1] = b * Math.cos((2 * Math.PI * i) / 48);
  }
  return f;
}

describe('level meter', () => {
  for (const format of SAMPLE_FORMATS) {
    it(`${format}: per-channel peaks of a sine at -6 dBFS and -20 dBFS`, () => {
      const pcm = fromFloat32(sine(4800, 0.5, 0.1), format);
      const out = new Float64Array(2);
      blockPeaks(pcm, format, 2, out);
      const tol = format === 'u8' ? 0.01 : 1e-4;
      assert.ok(Math.abs(out[0]! - 0.5) < tol, `left ${out[0]}`);
      assert.ok(Math.abs(out[1]! - 0.1) < tol, `right ${out[1]}`);
      // from an odd byte offset, as socket chunks may be
      const odd = Buffer.alloc(pcm.length + 1);
      pcm.copy(odd, 1);
      blockPeaks(odd.subarray(1), format, 2, out);
      assert.ok(Math.abs(out[0]! - 0.5) < tol);
    });
  }

  it('full-scale negative s16 is 0 dBFS; silence is SILENCE_DB', () => {
    const b = Buffer.alloc(8);
    b.writeInt16LE(-32768, 4);
    const out = new Float64Array(2);
    blockPeaks(b, 's16le', 2, out);
    assert.equal(toDb(out[0]!), 0);
    assert.equal(toDb(out[1]!), SILENCE_DB);
  });

  it('holds the peak for 300 ms, then falls at 20 dB/s', () => {
    let t = 1000;
    const m = new PeakMeter('f32le', 2, () => t);
    assert.deepEqual(m.levelsDb(), [SILENCE_DB, SILENCE_DB]);
    m.update(Buffer.from(sine(480, 1, 0.5).buffer));
    assert.deepEqual(m.levelsDb(), [0, -6]);
    t += 300; // still held
    assert.deepEqual(m.levelsDb(), [0, -6]);
    t += 500; // then half a second of falling: 10 dB lower
    assert.deepEqual(m.levelsDb(), [-10, -16]);
    m.update(Buffer.from(sine(480, 0.5, 0).buffer)); // -6 is louder than the falling left: taken
    assert.deepEqual(m.levelsDb(), [-6, -16]);
  });
});
