import assert from 'node:assert/strict';
import { convert, fromFloat32, toFloat32 } from '../../src/dsp/convert';
import { SAMPLE_FORMATS } from '../../src/format';
import { mulberry32 } from '../helpers/rng';

const rng = mulberry32;

function s24Bytes(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 3);
  values.forEach((v, i) => b.writeIntLE(v, i * 3, 3));
  return b;
}

/** The same bytes at an odd byteOffset, to exercise the unaligned path. */
function unaligned(b: Buffer): Buffer {
  const big = Buffer.alloc(b.length + 1);
  b.copy(big, 1);
  const view = big.subarray(1);
  assert.equal(view.byteOffset % 2, 1);
  return view;
}

describe('dsp/convert', () => {
  describe('toFloat32 known values', () => {
    it('u8', () => {
      assert.deepEqual(Array.from(toFloat32(Buffer.from([0, 64, 128, 192, 255]), 'u8')), [-1, -0.5, 0, 0.5, 127 / 128]);
    });

    it('s16le', () => {
      const b = Buffer.from([0x00, 0x80, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x40, 0xff, 0x7f, 0x01, 0x00]);
      assert.deepEqual(Array.from(toFloat32(b, 's16le')), [-1, -0.5, 0, 0.5, 32767 / 32768, 1 / 32768]);
    });

    it('s24le', () => {
      const b = s24Bytes([-8388608, -4194304, 0, 4194304, 8388607, -1]);
      assert.deepEqual(Array.from(toFloat32(b, 's24le')), [-1, -0.5, 0, 0.5, Math.fround(8388607 / 8388608), -1 / 8388608]);
    });

    it('s32le', () => {
      const b = Buffer.alloc(16);
      [-2147483648, -1073741824, 1073741824, 256].forEach((v, i) => b.writeInt32LE(v, i * 4));
      assert.deepEqual(Array.from(toFloat32(b, 's32le')), [-1, -0.5, 0.5, 256 / 2147483648]);
    });

    it('f32le is copied as is (no clamping)', () => {
      const b = Buffer.alloc(12);
      [0.25, -1.5, 3].forEach((v, i) => b.writeFloatLE(v, i * 4));
      const f = toFloat32(b, 'f32le');
      assert.deepEqual(Array.from(f), [0.25, -1.5, 3]);
      b.writeFloatLE(9, 0);
      assert.equal(f[0], 0.25, 'result must not alias the input');
    });

    it('empty input gives empty output', () => {
      for (const fmt of SAMPLE_FORMATS) assert.equal(toFloat32(Buffer.alloc(0), fmt).length, 0);
    });

    it('rejects a partial trailing sample', () => {
      assert.throws(() => toFloat32(Buffer.alloc(3), 's16le'), RangeError);
      assert.throws(() => toFloat32(Buffer.alloc(4), 's24le'), /s24le buffer length 4 is not a multiple of 3/);
      assert.throws(() => toFloat32(Buffer.alloc(6), 'f32le'), RangeError);
      assert.throws(() => convert(Buffer.alloc(5), 's32le', 's16le'), RangeError);
    });
  });

  describe('fromFloat32 known values', () => {
    it('s16le: scaling, rounding to nearest, clamping at +-1.0', () => {
      const f = Float32Array.from([0, 0.5, -0.5, 1, -1, 1.5, -1.5, 1 / 32768, 0.3 / 32768, 0.7 / 32768, -0.7 / 32768]);
      const b = fromFloat32(f, 's16le');
      const got = Array.from({ length: f.length }, (_, i) => b.readInt16LE(i * 2));
      assert.deepEqual(got, [0, 16384, -16384, 32767, -32768, 32767, -32768, 1, 0, 1, -1]);
    });

    it('s16le: exact bytes', () => {
      assert.deepEqual(fromFloat32(Float32Array.from([0.5, -1, 1]), 's16le'), Buffer.from([0x00, 0x40, 0x00, 0x80, 0xff, 0x7f]));
    });

    it('rounds ties away from zero, symmetrically', () => {
      const f = Float32Array.from([0.5 / 32768, -0.5 / 32768, 1.5 / 32768, -1.5 / 32768]);
      const b = fromFloat32(f, 's16le');
      assert.deepEqual([0, 1, 2, 3].map((i) => b.readInt16LE(i * 2)), [1, -1, 2, -2]);
    });

    it('u8', () => {
      const f = Float32Array.from([-1, -0.5, 0, 0.5, 1, 2, -2, 127 / 128]);
      assert.deepEqual(fromFloat32(f, 'u8'), Buffer.from([0, 64, 128, 192, 255, 255, 0, 255]));
    });

    it('s24le', () => {
      const f = Float32Array.from([1, -1, 0.5, -0.5, 1.25, -1.25, 1 / 8388608]);
      const b = fromFloat32(f, 's24le');
      const got = Array.from({ length: f.length }, (_, i) => b.readIntLE(i * 3, 3));
      assert.deepEqual(got, [8388607, -8388608, 4194304, -4194304, 8388607, -8388608, 1]);
      assert.deepEqual(b.subarray(0, 6), Buffer.from([0xff, 0xff, 0x7f, 0x00, 0x00, 0x80]));
    });

    it('s32le', () => {
      const f = Float32Array.from([1, -1, 0.5, -0.5, 4, -4]);
      const b = fromFloat32(f, 's32le');
      const got = Array.from({ length: f.length }, (_, i) => b.readInt32LE(i * 4));
      assert.deepEqual(got, [2147483647, -2147483648, 1073741824, -1073741824, 2147483647, -2147483648]);
    });

    it('f32le passes values through', () => {
      const f = Float32Array.from([0.1, -2, 7]);
      const b = fromFloat32(f, 'f32le');
      assert.deepEqual([0, 1, 2].map((i) => b.readFloatLE(i * 4)), [Math.fround(0.1), -2, 7]);
    });

    it('maps NaN to silence in integer formats', () => {
      const f = Float32Array.from([NaN]);
      assert.deepEqual(fromFloat32(f, 'u8'), Buffer.from([0x80]));
      assert.deepEqual(fromFloat32(f, 's16le'), Buffer.from([0, 0]));
      assert.deepEqual(fromFloat32(f, 's24le'), Buffer.from([0, 0, 0]));
      assert.deepEqual(fromFloat32(f, 's32le'), Buffer.from([0, 0, 0, 0]));
    });

    it('maps infinities to the limits', () => {
      const f = Float32Array.from([Infinity, -Infinity]);
      assert.deepEqual(fromFloat32(f, 's16le'), Buffer.from([0xff, 0x7f, 0x00, 0x80]));
      assert.deepEqual(fromFloat32(f, 'u8'), Buffer.from([0xff, 0x00]));
    });

    it('returns a Buffer of the right length', () => {
      const f = new Float32Array(7);
      for (const [fmt, bytes] of [['u8', 1], ['s16le', 2], ['s24le', 3], ['s32le', 4], ['f32le', 4]] as const) {
        const b = fromFloat32(f, fmt);
        assert.ok(Buffer.isBuffer(b));
        assert.equal(b.length, 7 * bytes);
      }
    });
  });

  describe('bit-exact round trips through Float32', () => {
    it('u8: all 256 values', () => {
      const src = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const f = toFloat32(src, 'u8');
      assert.deepEqual(fromFloat32(f, 'u8'), src);
      for (let i = 0; i < 256; i++) assert.ok(f[i] >= -1 && f[i] < 1);
    });

    it('s16le: all 65536 values', () => {
      const src = Buffer.alloc(65536 * 2);
      for (let v = -32768; v <= 32767; v++) src.writeInt16LE(v, (v + 32768) * 2);
      const f = toFloat32(src, 's16le');
      assert.equal(f[0], -1);
      assert.equal(f[32768], 0);
      assert.ok(src.equals(fromFloat32(f, 's16le')));
    });

    it('s16le: unaligned input', () => {
      const src = Buffer.alloc(1000);
      for (let i = 0; i < 500; i++) src.writeInt16LE(i * 131 - 32768, i * 2);
      const u = unaligned(src);
      assert.deepEqual(toFloat32(u, 's16le'), toFloat32(src, 's16le'));
      assert.ok(fromFloat32(toFloat32(u, 's16le'), 's16le').equals(src));
    });

    it('s24le: random values and the extremes', () => {
      const rand = rng(24);
      const values = [-8388608, -8388607, -1, 0, 1, 8388606, 8388607];
      for (let i = 0; i < 100000; i++) values.push(Math.floor(rand() * 16777216) - 8388608);
      const src = s24Bytes(values);
      const f = toFloat32(src, 's24le');
      const back = fromFloat32(f, 's24le');
      assert.ok(back.equals(src));
      assert.ok(toFloat32(unaligned(src), 's24le').every((x, i) => x === f[i]));
    });

    it('s32le: values with at most 24 significant bits', () => {
      const rand = rng(32);
      const src = Buffer.alloc(4 * 10000);
      for (let i = 0; i < 10000; i++) src.writeInt32LE((Math.floor(rand() * 16777216) - 8388608) * 256, i * 4);
      assert.ok(fromFloat32(toFloat32(src, 's32le'), 's32le').equals(src));
      assert.ok(fromFloat32(toFloat32(unaligned(src), 's32le'), 's32le').equals(src));
    });

    it('f32le: arbitrary floats, unaligned too', () => {
      const rand = rng(7);
      const src = Buffer.alloc(4 * 1000);
      for (let i = 0; i < 1000; i++) src.writeFloatLE(rand() * 4 - 2, i * 4);
      assert.ok(fromFloat32(toFloat32(src, 'f32le'), 'f32le').equals(src));
      assert.ok(fromFloat32(toFloat32(unaligned(src), 'f32le'), 'f32le').equals(src));
    });
  });

  describe('convert', () => {
    it('same format: an equal copy', () => {
      const src = Buffer.from([1, 2, 3, 4, 5, 6]);
      for (const fmt of ['u8', 's16le', 's24le'] as const) {
        const out = convert(src, fmt, fmt);
        assert.deepEqual(out, src);
        out[0] = 99;
        assert.equal(src[0], 1, 'the result must be a copy');
      }
    });

    it('s32le -> s32le is exact for every value (no Float32 rounding)', () => {
      const rand = rng(99);
      const src = Buffer.alloc(4 * 1000);
      for (let i = 0; i < 1000; i++) src.writeInt32LE((Math.floor(rand() * 4294967296) - 2147483648) | 0, i * 4);
      assert.ok(convert(src, 's32le', 's32le').equals(src));
    });

    it('widening integer conversions shift left exactly', () => {
      const s16 = Buffer.alloc(65536 * 2);
      for (let v = -32768; v <= 32767; v++) s16.writeInt16LE(v, (v + 32768) * 2);
      const s24 = convert(s16, 's16le', 's24le');
      const s32 = convert(s16, 's16le', 's32le');
      for (let i = 0; i < 65536; i++) {
        const v = i - 32768;
        assert.equal(s24.readIntLE(i * 3, 3), v * 256);
        assert.equal(s32.readInt32LE(i * 4), v * 65536);
      }
      // and back again
      assert.ok(convert(s24, 's24le', 's16le').equals(s16));
      assert.ok(convert(s32, 's32le', 's16le').equals(s16));
    });

    it('u8 -> s16le is (v - 128) << 8', () => {
      const u8 = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const s16 = convert(u8, 'u8', 's16le');
      for (let i = 0; i < 256; i++) assert.equal(s16.readInt16LE(i * 2), (i - 128) * 256);
      assert.ok(convert(s16, 's16le', 'u8').equals(u8));
    });

    it('narrowing rounds to nearest, ties away from zero', () => {
      // s24 -> s16 divides by 256: 127 -> 0, 128 -> 1 (tie), 383 -> 1, 384 -> 2 (tie)
      const s24 = s24Bytes([127, 128, 383, 384, -127, -128, -384, 8388607, -8388608]);
      const s16 = convert(s24, 's24le', 's16le');
      const got = Array.from({ length: 9 }, (_, i) => s16.readInt16LE(i * 2));
      assert.deepEqual(got, [0, 1, 1, 2, 0, -1, -2, 32767, -32768]);
    });

    it('s32le -> s24le rounds once (no double rounding through Float32)', () => {
      // 0x0200007f / 256 = 131072.496 -> 131072. Float32 has a spacing of 4 at 2^25, so going
      // through Float32 would first make it 0x02000080, an exact tie, and give 131073.
      // 0x00ffff80 / 256 = 65535.5 -> 65536 (tie away from zero); 0x00ffff7f -> 65535.
      const src = Buffer.alloc(16);
      [0x0200007f, 0x00ffff80, 0x00ffff7f, -0x0200007f].forEach((v, i) => src.writeInt32LE(v, i * 4));
      const out = convert(src, 's32le', 's24le');
      assert.deepEqual([0, 1, 2, 3].map((i) => out.readIntLE(i * 3, 3)), [131072, 65536, 65535, -131072]);
      // the Float32 path really would have been wrong here
      assert.equal(fromFloat32(toFloat32(src, 's32le'), 's24le').readIntLE(0, 3), 131073);
    });

    it('f32le -> s16le clamps and rounds', () => {
      const f = Buffer.alloc(16);
      [1.5, -1.5, 0.25, 0.5 / 32768].forEach((v, i) => f.writeFloatLE(v, i * 4));
      const out = convert(f, 'f32le', 's16le');
      assert.deepEqual([0, 1, 2, 3].map((i) => out.readInt16LE(i * 2)), [32767, -32768, 8192, 1]);
    });

    it('s16le -> f32le -> s16le is exact', () => {
      const rand = rng(5);
      const src = Buffer.alloc(2 * 4096);
      for (let i = 0; i < 4096; i++) src.writeInt16LE(Math.floor(rand() * 65536) - 32768, i * 2);
      const f = convert(src, 's16le', 'f32le');
      assert.equal(f.length, 4 * 4096);
      assert.equal(f.readFloatLE(0), src.readInt16LE(0) / 32768);
      assert.ok(convert(f, 'f32le', 's16le').equals(src));
    });

    it('every pair of formats preserves values representable in both', () => {
      // multiples of 1/128 in [-1, 1) are exact in every format
      const values = Array.from({ length: 256 }, (_, i) => (i - 128) / 128);
      const f = Float32Array.from(values);
      for (const from of SAMPLE_FORMATS) {
        for (const to of SAMPLE_FORMATS) {
          const out = convert(fromFloat32(f, from), from, to);
          assert.deepEqual(Array.from(toFloat32(out, to)), values, `${from} -> ${to}`);
        }
      }
    });

    it('is fast enough for real-time use', function () {
      // 10 s of 48 kHz stereo s16: must be far faster than real time even on slow CI
      const src = Buffer.alloc(48000 * 2 * 2 * 10);
      const t0 = process.hrtime.bigint();
      const f = convert(src, 's16le', 'f32le');
      convert(f, 'f32le', 's16le');
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(ms < 1000, `took ${ms} ms`);
    });
  });
});
