/**
 * A small typed wrapper over the Speex resampler (SpeexDSP, compiled to
 * WASM by @echogarden/speex-resampler-wasm). Float in, float out,
 * interleaved, any channel count 1-8.
 *
 *   const r = await Resampler.create({ channels: 2, inRate: 44100, outRate: 48000 });
 *   const out = r.process(input);        // Float32Array, interleaved
 *   r.setRateFrac(44100 * 1000, 48000 * 1000 + 7, 44100, 48000); // drift correction
 *   const tail = r.flush();              // pushes the filter's latency out
 *   r.destroy();                         // frees the WASM state (idempotent)
 *
 * The WASM module is loaded once per process (asynchronously: WebAssembly
 * compilation); `Resampler.create` waits for it, `new Resampler()` needs it
 * loaded already (`await loadResampler()`), which lets a hot path create
 * resamplers synchronously.
 *
 * process() is streaming: the filter keeps its history between calls, so
 * feeding a signal in pieces gives the same output as feeding it at once.
 * The number of output frames follows the ratio exactly (the fractional
 * position is carried): N input frames give N x outRate / inRate (+-1)
 * output frames. The output is delayed by `outputLatency` frames (leading
 * silence from the filter's history); flush() pushes that tail out at the
 * end of a stream, and skipZeros() before the first process() removes the
 * leading delay instead.
 *
 * Not thread-safe, not for a realtime thread: it runs on the JS thread.
 */
import { makeError } from '../errors';
import { MAX_CHANNELS, MAX_RATE, MIN_CHANNELS, MIN_RATE } from '../format';

/** The WASM module's interface, as far as this wrapper uses it. */
interface SpeexModule {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _speex_resampler_init(channels: number, inRate: number, outRate: number, quality: number, errPtr: number): number;
  _speex_resampler_init_frac(
    channels: number, num: number, den: number, inRate: number, outRate: number, quality: number, errPtr: number,
  ): number;
  _speex_resampler_destroy(st: number): void;
  _speex_resampler_process_interleaved_float(st: number, inPtr: number, inLenPtr: number, outPtr: number, outLenPtr: number): number;
  _speex_resampler_set_rate(st: number, inRate: number, outRate: number): number;
  _speex_resampler_set_rate_frac(st: number, num: number, den: number, inRate: number, outRate: number): number;
  _speex_resampler_get_ratio(st: number, numPtr: number, denPtr: number): void;
  _speex_resampler_get_input_latency(st: number): number;
  _speex_resampler_get_output_latency(st: number): number;
  _speex_resampler_skip_zeros(st: number): number;
  _speex_resampler_reset_mem(st: number): number;
  _speex_resampler_strerror(err: number): number;
}

const PACKAGE = '@echogarden/speex-resampler-wasm';

let speex: SpeexModule | null = null;
let loading: Promise<SpeexModule> | null = null;

/** Speex quality 0 (fastest) .. 10 (best); 4 is what PulseAudio calls speex-float-4, PipeWire's default is 4 too. */
export const DEFAULT_QUALITY = 4;

async function importModule(): Promise<{ default: (arg?: object) => Promise<SpeexModule> }> {
  try {
    // Node >= 20.19 can require() an ES module without top-level await (this one has none).
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(PACKAGE) as { default: (arg?: object) => Promise<SpeexModule> };
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_REQUIRE_ESM') throw e;
    // Older Node: a real dynamic import (tsc would turn a literal import() into require()).
    const dynamicImport = new Function('s', 'return import(s)') as (s: string) => Promise<{ default: (arg?: object) => Promise<SpeexModule> }>;
    return dynamicImport(PACKAGE);
  }
}

/** Loads (once) and returns the WASM module. Safe to call many times. */
export function loadResampler(): Promise<void> {
  if (!loading) {
    loading = importModule()
      .then((m) => m.default())
      .then((mod) => (speex = mod));
    loading.catch(() => (loading = null)); // a failed load may be retried
  }
  return loading.then(() => undefined);
}

/** True once loadResampler() has finished. */
export function resamplerLoaded(): boolean {
  return speex !== null;
}

export interface ResamplerOptions {
  /** interleaved channels, 1-8 */
  channels: number;
  /** input rate in Hz (8000-192000) */
  inRate: number;
  /** output rate in Hz (8000-192000) */
  outRate: number;
  /** Speex quality 0-10 (default DEFAULT_QUALITY) */
  quality?: number;
}

function checkRate(name: string, v: number): void {
  if (!Number.isInteger(v) || v < MIN_RATE || v > MAX_RATE)
    throw makeError('EINVAL', 'resampler', `${name} must be an integer ${MIN_RATE}-${MAX_RATE}, got ${v}`);
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1 || v > 0xffffffff)
    throw makeError('EINVAL', 'resampler', `${name} must be an integer 1-4294967295, got ${v}`);
}

export class Resampler {
  readonly channels: number;
  readonly quality: number;
  private mod: SpeexModule;
  private st: number;
  /** scratch: [0] in_len, [1] out_len, [2] err/num, [3] den (4 x uint32) */
  private scratch: number;
  private inPtr = 0;
  private inCap = 0; // floats
  private outPtr = 0;
  private outCap = 0; // floats
  private num = 1;
  private den = 1;
  private inRate_: number;
  private outRate_: number;

  /** Creates a resampler once the WASM module is loaded (waits for it). */
  static async create(opts: ResamplerOptions): Promise<Resampler> {
    await loadResampler();
    return new Resampler(opts);
  }

  /** Synchronous constructor: needs `await loadResampler()` first (throws otherwise). */
  constructor(opts: ResamplerOptions) {
    if (!speex) throw new Error('resampler: the WASM module is not loaded yet (await loadResampler() or use Resampler.create)');
    const { channels, inRate, outRate } = opts;
    const quality = opts.quality ?? DEFAULT_QUALITY;
    if (!Number.isInteger(channels) || channels < MIN_CHANNELS || channels > MAX_CHANNELS)
      throw makeError('EINVAL', 'resampler', `channels must be an integer ${MIN_CHANNELS}-${MAX_CHANNELS}, got ${channels}`);
    checkRate('inRate', inRate);
    checkRate('outRate', outRate);
    if (!Number.isInteger(quality) || quality < 0 || quality > 10)
      throw makeError('EINVAL', 'resampler', `quality must be an integer 0-10, got ${quality}`);
    this.mod = speex;
    this.channels = channels;
    this.quality = quality;
    this.inRate_ = inRate;
    this.outRate_ = outRate;
    this.scratch = this.mod._malloc(16);
    if (!this.scratch) throw makeError('ENOMEM', 'resampler', 'out of WASM memory');
    this.mod.HEAPU32[(this.scratch >> 2) + 2] = 0;
    this.st = this.mod._speex_resampler_init(channels, inRate, outRate, quality, this.scratch + 8);
    const err = this.mod.HEAPU32[(this.scratch >> 2) + 2]!;
    if (!this.st || err !== 0) {
      this.mod._free(this.scratch);
      throw makeError('EINVAL', 'resampler', `speex_resampler_init failed: ${this.strerror(err)}`);
    }
    this.readRatio();
  }

  /** The current input rate (Hz, nominal). */
  get inRate(): number {
    return this.inRate_;
  }

  /** The current output rate (Hz, nominal). */
  get outRate(): number {
    return this.outRate_;
  }

  /** The exact ratio in use, input:output (reduced by Speex), e.g. {num: 147, den: 160} for 44.1k -> 48k. */
  get ratio(): { num: number; den: number } {
    return { num: this.num, den: this.den };
  }

  /** Filter delay in input frames. */
  get inputLatency(): number {
    this.alive();
    return this.mod._speex_resampler_get_input_latency(this.st);
  }

  /** Filter delay in output frames. */
  get outputLatency(): number {
    this.alive();
    return this.mod._speex_resampler_get_output_latency(this.st);
  }

  /** Changes the rates (keeps the filter's history). */
  setRate(inRate: number, outRate: number): void {
    this.alive();
    checkRate('inRate', inRate);
    checkRate('outRate', outRate);
    this.check(this.mod._speex_resampler_set_rate(this.st, inRate, outRate), 'speex_resampler_set_rate');
    this.inRate_ = inRate;
    this.outRate_ = outRate;
    this.readRatio();
  }

  /**
   * Sets an exact fractional ratio, input:output = num:den, for drift
   * correction (e.g. num = 48000 * 1000, den = 48000 * 1000 + 5 produces
   * 5 ppm more output than input). inRate/outRate are the nominal rates that
   * pick the filter's cut-off. The filter's history is kept, so the change is
   * click-free; Speex reduces the fraction.
   */
  setRateFrac(num: number, den: number, inRate: number, outRate: number): void {
    this.alive();
    checkU32('num', num);
    checkU32('den', den);
    checkRate('inRate', inRate);
    checkRate('outRate', outRate);
    this.check(this.mod._speex_resampler_set_rate_frac(this.st, num, den, inRate, outRate), 'speex_resampler_set_rate_frac');
    this.inRate_ = inRate;
    this.outRate_ = outRate;
    this.readRatio();
  }

  /**
   * Resamples interleaved float frames; returns the interleaved output
   * produced so far (a new array; its length is a multiple of `channels`).
   * The input length must be a multiple of `channels`.
   */
  process(input: Float32Array): Float32Array {
    this.alive();
    const ch = this.channels;
    if (input.length % ch !== 0)
      throw makeError('EINVAL', 'resampler', `input length ${input.length} is not a multiple of ${ch} channels`);
    const inFrames = input.length / ch;
    if (inFrames === 0) return new Float32Array(0);
    // output frames for this call: at most ceil(in * den / num) + 1; add slack for the carried fraction
    const maxOut = Math.ceil((inFrames * this.den) / this.num) + 2;
    this.ensure(inFrames * ch, maxOut * ch);
    const m = this.mod;
    m.HEAPF32.set(input, this.inPtr >> 2);
    const chunks: Float32Array[] = [];
    let total = 0;
    let inDone = 0;
    // Speex stops early when the output buffer is full (possible right after a
    // rate change); then the output is copied out and the rest of the input fed.
    while (inDone < inFrames) {
      const u32 = m.HEAPU32;
      u32[this.scratch >> 2] = inFrames - inDone;
      u32[(this.scratch >> 2) + 1] = maxOut;
      const err = m._speex_resampler_process_interleaved_float(
        this.st, this.inPtr + inDone * ch * 4, this.scratch, this.outPtr, this.scratch + 4);
      this.check(err, 'speex_resampler_process_interleaved_float');
      const usedIn = m.HEAPU32[this.scratch >> 2]!;
      const madeOut = m.HEAPU32[(this.scratch >> 2) + 1]!;
      inDone += usedIn;
      if (madeOut > 0) {
        chunks.push(m.HEAPF32.slice(this.outPtr >> 2, (this.outPtr >> 2) + madeOut * ch));
        total += madeOut * ch;
      }
      if (usedIn === 0 && madeOut === 0) {
        throw makeError('EIO', 'resampler', `speex made no progress (${inFrames - inDone} frames left)`);
      }
    }
    if (chunks.length === 1) return chunks[0]!;
    const out = new Float32Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  /**
   * Pushes the filter's remaining output out by feeding `inputLatency`
   * frames of silence; use at the end of a stream so that no tail is lost.
   */
  flush(): Float32Array {
    return this.process(new Float32Array(this.inputLatency * this.channels));
  }

  /**
   * Makes the first output sample correspond to the first input sample
   * (drops the filter's leading zeros). Call before the first process().
   */
  skipZeros(): void {
    this.alive();
    this.check(this.mod._speex_resampler_skip_zeros(this.st), 'speex_resampler_skip_zeros');
  }

  /** Clears the filter's history (as if just created, same ratio). */
  reset(): void {
    this.alive();
    this.check(this.mod._speex_resampler_reset_mem(this.st), 'speex_resampler_reset_mem');
  }

  /** Frees the WASM state. Idempotent; any other call afterwards throws EBADF. */
  destroy(): void {
    if (!this.st) return;
    const m = this.mod;
    m._speex_resampler_destroy(this.st);
    if (this.inPtr) m._free(this.inPtr);
    if (this.outPtr) m._free(this.outPtr);
    m._free(this.scratch);
    this.st = 0;
    this.inPtr = this.outPtr = this.scratch = 0;
    this.inCap = this.outCap = 0;
  }

  private alive(): void {
    if (!this.st) throw makeError('EBADF', 'resampler', 'the resampler was destroyed');
  }

  private ensure(inFloats: number, outFloats: number): void {
    const m = this.mod;
    if (inFloats > this.inCap) {
      if (this.inPtr) m._free(this.inPtr);
      const cap = Math.max(inFloats, this.inCap * 2, 1024);
      this.inPtr = m._malloc(cap * 4);
      if (!this.inPtr) throw makeError('ENOMEM', 'resampler', 'out of WASM memory');
      this.inCap = cap;
    }
    if (outFloats > this.outCap) {
      if (this.outPtr) m._free(this.outPtr);
      const cap = Math.max(outFloats, this.outCap * 2, 1024);
      this.outPtr = m._malloc(cap * 4);
      if (!this.outPtr) throw makeError('ENOMEM', 'resampler', 'out of WASM memory');
      this.outCap = cap;
    }
  }

  private readRatio(): void {
    const m = this.mod;
    m._speex_resampler_get_ratio(this.st, this.scratch + 8, this.scratch + 12);
    this.num = m.HEAPU32[(this.scratch >> 2) + 2]!;
    this.den = m.HEAPU32[(this.scratch >> 2) + 3]!;
  }

  private check(err: number, call: string): void {
    if (err !== 0) throw makeError('EINVAL', 'resampler', `${call} failed: ${this.strerror(err)}`);
  }

  private strerror(err: number): string {
    const ptr = this.mod._speex_resampler_strerror(err);
    if (!ptr) return `error ${err}`;
    const heap = this.mod.HEAPU8;
    let end = ptr;
    while (end < heap.length && heap[end] !== 0) end++;
    return Buffer.from(heap.subarray(ptr, end)).toString('utf8');
  }
}
