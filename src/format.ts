/**
 * The sample-format table shared by every layer (native addon, protocol,
 * WAV files, DSP). Mirrors `formats[]` in native/format.c: the names
 * here are the names the addon accepts.
 */
export const SAMPLE_FORMATS = ['u8', 's16le', 's24le', 's32le', 'f32le'] as const;
export type SampleFormat = (typeof SAMPLE_FORMATS)[number];

export interface FormatInfo {
  readonly name: SampleFormat;
  /** bytes per sample (one channel) */
  readonly bytes: number;
  /** bits carried per sample */
  readonly bits: number;
  /** true for IEEE float */
  readonly float: boolean;
  /** the byte value of digital silence */
  readonly silence: number;
}

export const FORMAT_INFO: Readonly<Record<SampleFormat, FormatInfo>> = {
  u8: { name: 'u8', bytes: 1, bits: 8, float: false, silence: 0x80 },
  s16le: { name: 's16le', bytes: 2, bits: 16, float: false, silence: 0 },
  s24le: { name: 's24le', bytes: 3, bits: 24, float: false, silence: 0 },
  s32le: { name: 's32le', bytes: 4, bits: 32, float: false, silence: 0 },
  f32le: { name: 'f32le', bytes: 4, bits: 32, float: true, silence: 0 },
};

export const MIN_RATE = 8000;
export const MAX_RATE = 192000;
export const MIN_CHANNELS = 1;
export const MAX_CHANNELS = 8;

/** The format of a loop: fixed by the server end when it opens. */
export interface PcmFormat {
  format: SampleFormat;
  rate: number;
  channels: number;
}

export function isSampleFormat(v: unknown): v is SampleFormat {
  return typeof v === 'string' && (SAMPLE_FORMATS as readonly string[]).includes(v);
}

/** Bytes in one frame (one sample for every channel). */
export function frameBytes(f: PcmFormat): number {
  return FORMAT_INFO[f.format].bytes * f.channels;
}

/** Bytes per second of audio in this format. */
export function bytesPerSecond(f: PcmFormat): number {
  return frameBytes(f) * f.rate;
}

/** Returns a message describing what is wrong with `f`, or null when valid. */
export function validateFormat(f: { format?: unknown; rate?: unknown; channels?: unknown }): string | null {
  if (!isSampleFormat(f.format)) return `format must be one of ${SAMPLE_FORMATS.join(', ')}`;
  if (typeof f.rate !== 'number' || !Number.isInteger(f.rate) || f.rate < MIN_RATE || f.rate > MAX_RATE)
    return `rate must be an integer ${MIN_RATE}-${MAX_RATE}`;
  if (typeof f.channels !== 'number' || !Number.isInteger(f.channels) || f.channels < MIN_CHANNELS || f.channels > MAX_CHANNELS)
    return `channels must be an integer ${MIN_CHANNELS}-${MAX_CHANNELS}`;
  return null;
}

export function describeFormat(f: PcmFormat): string {
  return `${f.format} ${f.channels}ch ${f.rate}Hz`;
}
