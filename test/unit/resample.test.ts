import assert from 'node:assert/strict';
import { loadResampler, Resampler, resamplerLoaded } from '../../src/dsp/resample';

/** Interleaved sine, `channels` copies (channel c has amplitude amp * (c + 1) / channels). */
function sine(freq: number, rate: number, frames: number, amp: number, channels = 1): Float32Array {
  const out = new Float32Array(frames * channels);
  for (let i = 0; i < frames; i++) {
    const v = Math.sin((2 * Math.PI * freq * i) / rate);
    for (let c = 0; c < channels; c++) out[i * channels + c] = (amp * v * (c + 1)) / channels;
  }
  return out;
}

function channel(x: Float32Array, channels: number, c: number): Float32Array {
  const out = new Float32Array(x.length / channels);
  for (let i = 0; i < out.length; i++) out[i] = x[i * channels + c]!;
  return out;
}

/** Frequency from rising zero crossings, linearly interpolated, over x[from, to). */
function measureFreq(x: Float32Array, rate: number, from: number, to: number): number {
  const crossings: number[] = [];
  for (let i = from + 1; i < to; i++) {
    const a = x[i - 1]!;
    const b = x[i]!;
    if (a < 0 && b >= 0) crossings.push(i - 1 + a / (a - b));
  }
  assert.ok(crossings.length > 10, `only ${crossings.length} zero crossings`);
  const periods = crossings.length - 1;
  return (periods * rate) / (crossings[crossings.length - 1]! - crossings[0]!);
}

function rms(x: Float32Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s / (to - from));
}

describe('dsp/resample (speex WASM)', () => {
  before(async function () {
    this.timeout(20000);
    await loadResampler();
    assert.ok(resamplerLoaded());
  });

  for (const [inRate, outRate] of [
    [44100, 48000],
    [48000, 44100],
  ] as const) {
    it(`${inRate} -> ${outRate}: a 1 kHz sine keeps its frequency and level; length follows the ratio`, () => {
      const r = new Resampler({ channels: 2, inRate, outRate });
      try {
        const frames = inRate; // 1 s
        const input = sine(1000, inRate, frames, 0.5, 2);
        // feed in uneven pieces, as a stream would
        const parts: Float32Array[] = [];
        for (let off = 0, k = 0; off < frames; k++) {
          const n = Math.min(frames - off, [441, 1000, 37, 4096][k % 4]!);
          parts.push(r.process(input.subarray(off * 2, (off + n) * 2)));
          off += n;
        }
        parts.push(r.flush());
        const total = parts.reduce((s, p) => s + p.length, 0);
        const out = new Float32Array(total);
        let o = 0;
        for (const p of parts) {
          out.set(p, o);
          o += p.length;
        }
        assert.equal(out.length % 2, 0);
        const outFrames = out.length / 2;
        // 1 s in -> 1 s out, delayed by the filter: process() gives in x ratio, flush() the delayed tail
        const flushed = parts[parts.length - 1]!.length / 2;
        assert.ok(Math.abs(outFrames - flushed - outRate) <= 1, `${outFrames - flushed} frames before flush, expected ~${outRate}`);
        assert.ok(Math.abs(flushed - r.outputLatency) <= 1, `flush gave ${flushed} frames, latency ${r.outputLatency}`);

        for (const c of [0, 1]) {
          const x = channel(out, 2, c);
          const lat = r.outputLatency;
          const from = lat + 2000;
          const to = outFrames - lat - 2000;
          const f = measureFreq(x, outRate, from, to);
          assert.ok(Math.abs(f - 1000) < 0.5, `channel ${c}: frequency ${f} Hz, expected 1000`);
          const amp = (0.5 * (c + 1)) / 2;
          const level = rms(x, from, to);
          const db = 20 * Math.log10(level / (amp / Math.SQRT2));
          assert.ok(Math.abs(db) < 0.1, `channel ${c}: level off by ${db.toFixed(3)} dB`);
        }
      } finally {
        r.destroy();
      }
    });
  }

  it('streaming in pieces equals processing at once', async () => {
    const input = sine(440, 44100, 20000, 0.8, 1);
    const a = await Resampler.create({ channels: 1, inRate: 44100, outRate: 48000 });
    const b = await Resampler.create({ channels: 1, inRate: 44100, outRate: 48000 });
    try {
      const whole = a.process(input);
      const pieces: number[] = [];
      for (let off = 0; off < input.length; off += 777) pieces.push(...b.process(input.subarray(off, off + 777)));
      assert.equal(pieces.length, whole.length);
      for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(pieces[i]! - whole[i]!) < 1e-6, `sample ${i}`);
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  it('delays by outputLatency frames; skipZeros() removes the delay', async () => {
    const impulse = new Float32Array(4000);
    impulse[1000] = 1;
    const peak = (x: Float32Array): number => x.reduce((best, v, i) => (Math.abs(v) > Math.abs(x[best]!) ? i : best), 0);
    const a = await Resampler.create({ channels: 1, inRate: 48000, outRate: 48000 });
    const b = await Resampler.create({ channels: 1, inRate: 48000, outRate: 48000 });
    b.skipZeros();
    try {
      assert.equal(peak(a.process(impulse)), 1000 + a.outputLatency);
      assert.equal(peak(b.process(impulse)), 1000);
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  it('exposes the reduced ratio', async () => {
    const r = await Resampler.create({ channels: 1, inRate: 44100, outRate: 48000 });
    assert.deepEqual(r.ratio, { num: 147, den: 160 });
    r.destroy();
  });

  it('setRateFrac changes the output count by the requested ppm (drift correction)', async () => {
    const r = await Resampler.create({ channels: 1, inRate: 48000, outRate: 48000 });
    try {
      const input = sine(1000, 48000, 48000, 0.5);
      let same = 0;
      for (let k = 0; k < 5; k++) same += r.process(input).length;
      // 1000 ppm more output: in:out = 1000000:1001000
      r.setRateFrac(1000000, 1001000, 48000, 48000);
      assert.deepEqual(r.ratio, { num: 1000, den: 1001 });
      let faster = 0;
      for (let k = 0; k < 5; k++) faster += r.process(input).length;
      const expected = 5 * 48000 * 1.001;
      assert.ok(Math.abs(faster - expected) <= 3, `${faster} frames after set_rate_frac, expected ~${expected}`);
      assert.ok(Math.abs(same - 5 * 48000) <= 1, `${same} frames at 1:1`);
      // and the frequency follows: 1000 Hz played 0.1 % slower
      const out = r.process(sine(1000, 48000, 48000, 0.5));
      const f = measureFreq(out, 48000, 1000, out.length - 1000);
      assert.ok(Math.abs(f - 1000 / 1.001) < 0.2, `frequency ${f}`);
    } finally {
      r.destroy();
    }
  });

  it('rejects bad arguments with Node-shaped errors, and use after destroy', async () => {
    await assert.rejects(Resampler.create({ channels: 0, inRate: 48000, outRate: 44100 }), { code: 'EINVAL', syscall: 'resampler' });
    await assert.rejects(Resampler.create({ channels: 2, inRate: 1000, outRate: 44100 }), /inRate must be an integer 8000-192000/);
    await assert.rejects(Resampler.create({ channels: 2, inRate: 48000, outRate: 44100, quality: 11 }), /quality/);
    const r = await Resampler.create({ channels: 2, inRate: 48000, outRate: 44100 });
    assert.throws(() => r.process(new Float32Array(3)), { code: 'EINVAL' });
    assert.throws(() => r.setRateFrac(0, 1, 48000, 48000), /num must be/);
    r.destroy();
    r.destroy();
    assert.throws(() => r.process(new Float32Array(2)), { code: 'EBADF' });
  });

  it('is much faster than real time (44.1k -> 48k stereo)', async () => {
    const r = await Resampler.create({ channels: 2, inRate: 44100, outRate: 48000 });
    const input = sine(1000, 44100, 44100 * 5, 0.5, 2);
    const t0 = process.hrtime.bigint();
    const out = r.process(input);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    r.destroy();
    assert.ok(out.length > 0);
    assert.ok(s < 2.5, `5 s of audio took ${s} s`); // generous: a loaded 2-core machine
  });
});
