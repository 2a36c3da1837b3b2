/**
 * Sample format conversion between the formats of format.ts, through
 * normalized floating point in [-1, 1).
 *
 * Scale conventions (integer -> float is an exact division by a power of 2):
 *   u8     (v - 128) / 128
 *   s16le  v / 32768
 *   s24le  v / 8388608
 *   s32le  v / 2147483648
 *   f32le  as is
 *
 * float -> integer multiplies back, rounds to nearest (ties away from zero,
 * so the rounding is symmetric around 0 and adds no DC offset), and clamps to
 * the integer range; NaN becomes 0. So +1.0 maps to the largest positive
 * value and -1.0 to the most negative. u8, s16 and s24 survive a trip through
 * Float32 bit-exactly (24-bit mantissa); s32 values are rounded to 24
 * significant bits by Float32, so convert() uses Float64 internally when s32
 * is involved. Writing f32le does not clamp: f32 -> f32 is the identity.
 *
 * Samples are interleaved; the functions do not care about channel counts.
 * 16/32-bit samples go through typed-array views (copying unaligned input
 * first), so the inner loops are plain array loops.
 */
import { FORMAT_INFO, type SampleFormat } from '../format';

/** Typed-array views are native-endian; the formats are little-endian. */
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type FloatArray = Float32Array | Float64Array;

function checkLength(src: Uint8Array, format: SampleFormat): number {
  const bytes = FORMAT_INFO[format].bytes;
  if (src.length % bytes !== 0) {
    throw new RangeError(`${format} buffer length ${src.length} is not a multiple of ${bytes} bytes per sample`);
  }
  return src.length / bytes;
}

/**
 * An ArrayBuffer-backed little-endian view of `src` in host byte order at an
 * offset aligned for `bytes`-wide elements: `src`'s own memory when possible,
 * otherwise a copy (byte-swapped on big-endian hosts).
 */
function alignedBytes(src: Uint8Array, bytes: 2 | 4): { buffer: ArrayBufferLike; byteOffset: number } {
  if (HOST_LE && src.byteOffset % bytes === 0) return { buffer: src.buffer, byteOffset: src.byteOffset };
  const copy = new Uint8Array(src); // a copy in a fresh ArrayBuffer, at offset 0
  if (!HOST_LE) {
    const view = Buffer.from(copy.buffer, 0, copy.length);
    if (bytes === 2) view.swap16();
    else view.swap32();
  }
  return { buffer: copy.buffer, byteOffset: 0 };
}

/** Decodes `n` samples of `src` into `out` (normalized). */
function decodeInto(src: Uint8Array, format: SampleFormat, out: FloatArray, n: number): void {
  switch (format) {
    case 'u8':
      for (let i = 0; i < n; i++) out[i] = (src[i] - 128) * (1 / 128);
      return;
    case 's16le': {
      const { buffer, byteOffset } = alignedBytes(src, 2);
      const v = new Int16Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = v[i] * (1 / 32768);
      return;
    }
    case 's24le':
      for (let i = 0, j = 0; i < n; i++, j += 3) {
        // assemble in the top 24 bits of an int32, then shift down to sign-extend
        const s = ((src[j] << 8) | (src[j + 1] << 16) | (src[j + 2] << 24)) >> 8;
        out[i] = s * (1 / 8388608);
      }
      return;
    case 's32le': {
      const { buffer, byteOffset } = alignedBytes(src, 4);
      const v = new Int32Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = v[i] * (1 / 2147483648);
      return;
    }
    case 'f32le': {
      const { buffer, byteOffset } = alignedBytes(src, 4);
      out.set(new Float32Array(buffer, byteOffset, n));
      return;
    }
  }
}

/** Rounds half away from zero (Math.round rounds half up, which is asymmetric). */
function roundSym(x: number): number {
  return x < 0 ? -Math.floor(0.5 - x) : Math.floor(x + 0.5);
}

/** Encodes normalized samples as `format`, clamping integer formats. */
function encode(src: FloatArray, format: SampleFormat): Buffer {
  const n = src.length;
  let out: Buffer;
  switch (format) {
    case 'u8': {
      out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) {
        const x = src[i] * 128;
        // comparisons are false for NaN, which falls through to 128 (silence)
        out[i] = x >= 127 ? 255 : x <= -128 ? 0 : x === x ? roundSym(x) + 128 : 128;
      }
      return out;
    }
    case 's16le': {
      const v = new Int16Array(n);
      for (let i = 0; i < n; i++) {
        const x = src[i] * 32768;
        // NaN: roundSym(NaN) is NaN, which an Int16Array stores as 0
        v[i] = x >= 32767 ? 32767 : x <= -32768 ? -32768 : roundSym(x);
      }
      out = Buffer.from(v.buffer, 0, n * 2);
      if (!HOST_LE) out.swap16();
      return out;
    }
    case 's24le': {
      out = Buffer.allocUnsafe(n * 3);
      for (let i = 0, j = 0; i < n; i++, j += 3) {
        const x = src[i] * 8388608;
        const s = x >= 8388607 ? 8388607 : x <= -8388608 ? -8388608 : x === x ? roundSym(x) : 0;
        out[j] = s & 0xff;
        out[j + 1] = (s >> 8) & 0xff;
        out[j + 2] = (s >> 16) & 0xff;
      }
      return out;
    }
    case 's32le': {
      const v = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const x = src[i] * 2147483648;
        v[i] = x >= 2147483647 ? 2147483647 : x <= -2147483648 ? -2147483648 : roundSym(x);
      }
      out = Buffer.from(v.buffer, 0, n * 4);
      if (!HOST_LE) out.swap32();
      return out;
    }
    case 'f32le': {
      const v = src instanceof Float32Array ? Float32Array.from(src) : new Float32Array(src);
      out = Buffer.from(v.buffer, 0, n * 4);
      if (!HOST_LE) out.swap32();
      return out;
    }
  }
}

/** Decodes interleaved samples to normalized Float32 (see the conventions above). */
export function toFloat32(src: Uint8Array, format: SampleFormat): Float32Array {
  const n = checkLength(src, format);
  const out = new Float32Array(n);
  decodeInto(src, format, out, n);
  return out;
}

/** Encodes normalized Float32 samples as `format`: rounded to nearest, clamped for integer formats. */
export function fromFloat32(src: Float32Array, format: SampleFormat): Buffer {
  return encode(src, format);
}

/**
 * Converts interleaved samples from one format to another. Always returns a
 * new Buffer (a copy when the formats are equal).
 */
export function convert(src: Uint8Array, from: SampleFormat, to: SampleFormat): Buffer {
  const n = checkLength(src, from);
  if (from === to) return Buffer.from(src);
  // Float32 holds u8/s16/s24 exactly; s32 needs Float64 to avoid double rounding.
  const wide = from === 's32le' || to === 's32le';
  const tmp = wide ? new Float64Array(n) : new Float32Array(n);
  decodeInto(src, from, tmp, n);
  return encode(tmp, to);
}
