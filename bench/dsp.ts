/**
 * Throughput of our DSP path, in x realtime (seconds of 48 kHz stereo audio
 * processed per second of wall time, on this one JS thread): the sample
 * format conversions of src/dsp/convert.ts and the Speex resampler
 * (src/dsp/resample.ts) between 44.1 and 48 kHz.
 */
import { convert, fromFloat32, toFloat32 } from '../src/dsp/convert';
import { Resampler } from '../src/dsp/resample';
import type { SampleFormat } from '../src/format';
import { FORMAT_INFO } from '../src/format';

export interface DspResult {
  name: string;
  /** seconds of audio per second of wall time */
  xRealtime: number;
}

const CH = 2;

function noise(frames: number): Float32Array {
  const f = new Float32Array(frames * CH);
  let a = 12345;
  for (let i = 0; i < f.length; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    f[i] = (a / 4294967296) * 1.8 - 0.9;
  }
  return f;
}

/** Runs `fn` (which processes `audioS` seconds) until `minS` of wall time has passed; returns x realtime. */
function time(fn: () => unknown, audioS: number, minS: number): number {
  fn(); // warm-up (JIT)
  let reps = 0;
  const t0 = process.hrtime.bigint();
  let wall = 0;
  do {
    fn();
    reps++;
    wall = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (wall < minS);
  return Math.round(((reps * audioS) / wall) * 10) / 10;
}

export async function measureDsp(audioS: number, minS: number): Promise<DspResult[]> {
  const rate = 48000;
  const f = noise(Math.round(audioS * rate));
  const encoded: Record<SampleFormat, Buffer> = {
    u8: fromFloat32(f, 'u8'),
    s16le: fromFloat32(f, 's16le'),
    s24le: fromFloat32(f, 's24le'),
    s32le: fromFloat32(f, 's32le'),
    f32le: fromFloat32(f, 'f32le'),
  };
  const out: DspResult[] = [];
  const pairs: [SampleFormat, SampleFormat][] = [
    ['s16le', 'f32le'],
    ['f32le', 's16le'],
    ['s24le', 'f32le'],
    ['f32le', 's24le'],
    ['u8', 'f32le'],
    ['f32le', 'u8'],
    ['s16le', 's24le'],
  ];
  for (const [from, to] of pairs) {
    const src = encoded[from];
    if (src.length !== f.length * FORMAT_INFO[from].bytes) throw new Error('bench: bad test signal');
    out.push({ name: `convert ${from} -> ${to}`, xRealtime: time(() => convert(src, from, to), audioS, minS) });
  }
  out.push({ name: 'toFloat32 s16le', xRealtime: time(() => toFloat32(encoded.s16le, 's16le'), audioS, minS) });
  for (const [inRate, outRate] of [
    [44100, 48000],
    [48000, 44100],
  ] as const) {
    const input = noise(Math.round(audioS * inRate));
    const r = await Resampler.create({ channels: CH, inRate, outRate });
    try {
      out.push({ name: `resample ${inRate} -> ${outRate} (speex q${r.quality})`, xRealtime: time(() => r.process(input), audioS, minS) });
    } finally {
      r.destroy();
    }
  }
  return out;
}
