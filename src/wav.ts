/**
 * WAV (RIFF/WAVE) reading and writing for the sample formats in format.ts.
 *
 * Writing follows Microsoft's rules for choosing the fmt chunk layout:
 *   - WAVE_FORMAT_PCM (1) for integer samples of <= 16 bits and <= 2 channels;
 *   - WAVE_FORMAT_IEEE_FLOAT (3) for f32le with <= 2 channels (18-byte fmt
 *     with cbSize = 0, plus the `fact` chunk that non-PCM formats carry);
 *   - WAVE_FORMAT_EXTENSIBLE (0xFFFE) whenever there are more than 2 channels
 *     or integer samples wider than 16 bits, with the KSDATAFORMAT subformat
 *     GUID and the default speaker mask for the channel count.
 *
 * Reading accepts chunks in any order (LIST, fact, bext, ... are skipped),
 * the extensible layout, RF64 (64-bit sizes in a ds64 chunk), and a data size
 * of 0 or 0xFFFFFFFF meaning "until end of file" (streaming writers).
 */
import { AudioloopError } from './errors';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FORMAT_INFO, frameBytes, validateFormat, type PcmFormat, type SampleFormat } from './format';

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** KSDATAFORMAT_SUBTYPE_* GUIDs are xxxxxxxx-0000-0010-8000-00aa00389b71 where
 * Data1 (xxxxxxxx) is the format tag. These are the 12 bytes after Data1, as
 * stored in a GUID struct (Data2 and Data3 little-endian, Data4 as bytes). */
const KSDATAFORMAT_GUID_TAIL = Buffer.from([0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);

/** Default dwChannelMask per channel count (KSAUDIO_SPEAKER_* layouts). */
export const DEFAULT_CHANNEL_MASKS: readonly number[] = [
  0, // unused
  0x4, // 1: FC (mono)
  0x3, // 2: FL FR
  0x7, // 3: FL FR FC
  0x33, // 4: FL FR BL BR (quad)
  0x37, // 5: FL FR FC BL BR (5.0)
  0x3f, // 6: FL FR FC LFE BL BR (5.1)
  0x70f, // 7: FL FR FC LFE BC SL SR (6.1)
  0x63f, // 8: FL FR FC LFE BL BR SL SR (7.1)
];

const FORMAT_TAG_NAMES: Record<number, string> = {
  0x0002: 'Microsoft ADPCM',
  0x0006: 'A-law',
  0x0007: 'mu-law',
  0x0011: 'IMA ADPCM',
  0x0031: 'GSM 6.10',
  0x0050: 'MPEG',
  0x0055: 'MPEG layer 3',
  0x00ff: 'AAC',
  0x2000: 'AC-3',
};

const U32_MAX = 0xffffffff;

/** Error for files that are not WAV or use an encoding/format we do not support. */
export class WavFormatError extends AudioloopError {
  declare readonly code: 'EWAVFORMAT';
  constructor(message: string) {
    super('EWAVFORMAT', message);
  }
}

function assertValidFormat(fmt: PcmFormat): void {
  const problem = validateFormat(fmt);
  if (problem !== null) throw new RangeError(`invalid PCM format: ${problem}`);
}

function isExtensible(fmt: PcmFormat): boolean {
  return fmt.channels > 2 || (!FORMAT_INFO[fmt.format].float && FORMAT_INFO[fmt.format].bits > 16);
}

/** Length in bytes of the header wavHeader() produces for `fmt` (everything before the PCM data). */
export function wavHeaderLength(fmt: PcmFormat): number {
  const float = FORMAT_INFO[fmt.format].float;
  const fmtBody = isExtensible(fmt) ? 40 : float ? 18 : 16;
  return 12 + 8 + fmtBody + (float ? 12 : 0) + 8;
}

/**
 * A canonical RIFF/WAVE header for `dataBytes` bytes of PCM data in `fmt`.
 * The RIFF size accounts for the pad byte that follows odd-sized data (the
 * caller writes it).
 *
 * `dataBytes` null means "length unknown" (a stream, or a file still being
 * written): the RIFF and data sizes are then 0xFFFFFFFF, which sox, ffmpeg
 * and parseWavHeader read as "until end of file". Sizes that do not fit in
 * 32 bits (data over ~4 GiB) are written the same way.
 */
export function wavHeader(fmt: PcmFormat, dataBytes: number | null): Buffer {
  assertValidFormat(fmt);
  if (dataBytes !== null && (!Number.isSafeInteger(dataBytes) || dataBytes < 0)) {
    throw new RangeError(`dataBytes must be a non-negative integer, got ${dataBytes}`);
  }
  const info = FORMAT_INFO[fmt.format];
  const extensible = isExtensible(fmt);
  const blockAlign = info.bytes * fmt.channels;
  const headerLength = wavHeaderLength(fmt);
  const riffSize = dataBytes === null ? Infinity : headerLength - 8 + dataBytes + (dataBytes & 1);
  const fits = riffSize <= U32_MAX;

  const h = Buffer.alloc(headerLength);
  let p = 0;
  const id = (s: string) => {
    h.write(s, p, 4, 'latin1');
    p += 4;
  };
  const u16 = (v: number) => (p = h.writeUInt16LE(v, p));
  const u32 = (v: number) => (p = h.writeUInt32LE(v, p));

  id('RIFF');
  u32(fits ? riffSize : U32_MAX);
  id('WAVE');

  id('fmt ');
  u32(extensible ? 40 : info.float ? 18 : 16);
  u16(extensible ? WAVE_FORMAT_EXTENSIBLE : info.float ? WAVE_FORMAT_IEEE_FLOAT : WAVE_FORMAT_PCM);
  u16(fmt.channels);
  u32(fmt.rate);
  u32(fmt.rate * blockAlign); // nAvgBytesPerSec
  u16(blockAlign);
  u16(info.bits);
  if (extensible) {
    u16(22); // cbSize
    u16(info.bits); // wValidBitsPerSample: every bit of the container is used
    u32(DEFAULT_CHANNEL_MASKS[fmt.channels]);
    u32(info.float ? WAVE_FORMAT_IEEE_FLOAT : WAVE_FORMAT_PCM); // SubFormat GUID Data1
    KSDATAFORMAT_GUID_TAIL.copy(h, p);
    p += KSDATAFORMAT_GUID_TAIL.length;
  } else if (info.float) {
    u16(0); // cbSize
  }

  if (info.float) {
    id('fact');
    u32(4);
    // dwSampleLength, in frames
    u32(dataBytes === null ? U32_MAX : Math.min(Math.floor(dataBytes / blockAlign), U32_MAX));
  }

  id('data');
  u32(fits && dataBytes !== null ? dataBytes : U32_MAX);
  if (p !== headerLength) throw new Error(`internal error: WAV header length ${p} != ${headerLength}`);
  return h;
}

// ---------------------------------------------------------------------------
// Writing

/**
 * Writes a WAV file incrementally. The header is written on open with
 * unknown sizes (0xFFFFFFFF, which readers take as "until end of file", so
 * even a file whose writer never reached close() is readable; a size of 0
 * would make sox read nothing) and patched by close().
 *
 * write() accepts chunks of any length, frame-aligned or not: every byte is
 * written to the file immediately and counted exactly. close() truncates a
 * trailing partial frame, appends the RIFF pad byte when the data length is
 * odd, and patches the RIFF, fact and data sizes. Writes are serialized, so
 * write() may be called without awaiting the previous one; each chunk is
 * copied, so the caller may reuse its buffer at once. A failed write (e.g.
 * ENOSPC) rejects its promise (so do not drop it unhandled) and every later
 * write() with the same error.
 *
 * close() is idempotent (every call returns the same promise) and is safe to
 * call at any time, including after a failed write or from an error handler
 * of the stream that fed the writer: it waits for the writes in flight and
 * finalizes the file with the data that actually reached it.
 */
export class WavFileWriter {
  readonly path: string;
  readonly format: PcmFormat;
  private readonly fh: FileHandle;
  private readonly headerLength: number;
  private readonly frameSize: number;
  /** bytes handed to write() and not refused */
  private accepted = 0;
  /** bytes known to be in the file */
  private written = 0;
  /** tail of the serialized write chain; never rejects */
  private chain: Promise<void> = Promise.resolve();
  /** the first write error; later writes fail with it */
  private error: Error | null = null;
  private closing: Promise<void> | null = null;
  private finalBytes: number | null = null;

  private constructor(path: string, fmt: PcmFormat, fh: FileHandle) {
    this.path = path;
    this.format = { format: fmt.format, rate: fmt.rate, channels: fmt.channels };
    this.fh = fh;
    this.headerLength = wavHeaderLength(fmt);
    this.frameSize = frameBytes(fmt);
  }

  /** Creates (or truncates) `path` and writes a provisional header. */
  static async open(path: string, fmt: PcmFormat): Promise<WavFileWriter> {
    assertValidFormat(fmt);
    const fh = await open(path, 'w');
    try {
      await writeFully(fh, wavHeader(fmt, null), 0);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    return new WavFileWriter(path, fmt, fh);
  }

  /**
   * PCM bytes written so far, exactly as many as were passed to write()
   * (including any partial trailing frame). After close(): the size of the
   * data chunk, i.e. whole frames only.
   */
  get dataBytes(): number {
    return this.finalBytes ?? this.accepted;
  }

  /** Whole frames written so far (after close(): frames in the file). */
  get frames(): number {
    return Math.floor(this.dataBytes / this.frameSize);
  }

  get closed(): boolean {
    return this.closing !== null;
  }

  /** Appends PCM bytes. Rejects after close() or after an earlier write failed. */
  write(buf: Uint8Array): Promise<void> {
    if (this.closing !== null) return Promise.reject(new Error(`${this.path}: write after close`));
    if (this.error !== null) return Promise.reject(this.error);
    if (buf.length === 0) return this.chain;
    const copy = Buffer.from(buf); // the caller may reuse buf while the write is queued
    this.accepted += copy.length;
    const done = this.chain.then(async () => {
      if (this.error !== null) throw this.error;
      try {
        await writeFully(this.fh, copy, this.headerLength + this.written);
        this.written += copy.length;
      } catch (err) {
        this.error = err as Error;
        throw err;
      }
    });
    this.chain = done.catch(() => undefined);
    return done;
  }

  /** Finalizes the header and closes the file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    await this.chain;
    // whatever reached the file, cut to whole frames
    const data = this.written - (this.written % this.frameSize);
    let failure: unknown = null;
    try {
      await this.fh.truncate(this.headerLength + data);
      if (data & 1) await writeFully(this.fh, Buffer.alloc(1), this.headerLength + data); // RIFF pad byte
      await writeFully(this.fh, wavHeader(this.format, data), 0);
      this.finalBytes = data;
    } catch (err) {
      failure = err;
    }
    try {
      await this.fh.close();
    } catch (err) {
      failure ??= err;
    }
    if (failure !== null) throw failure;
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    if (bytesWritten <= 0) throw new Error('short write');
    off += bytesWritten;
  }
}

// ---------------------------------------------------------------------------
// Reading

export interface WavHeaderInfo {
  format: PcmFormat;
  /** offset of the first PCM byte */
  dataOffset: number;
  /** size of the data chunk as declared; null: until end of file */
  dataBytes: number | null;
}

/** A read request of the header walker: `length` bytes at `offset` (fewer at EOF). */
interface ReadRequest {
  offset: number;
  length: number;
}

const MAX_FMT_BODY = 1024;

/**
 * Walks the RIFF chunks, yielding the reads it needs; runs unchanged over an
 * in-memory buffer (parseWavHeader) or a file (readWavFile, openWavStream).
 */
function* walkWav(): Generator<ReadRequest, WavHeaderInfo, Buffer> {
  const riff = yield { offset: 0, length: 12 };
  if (riff.length < 12) throw new WavFormatError('not a WAV file: too short for a RIFF header');
  const riffId = riff.toString('latin1', 0, 4);
  if (riffId === 'RIFX') throw new WavFormatError('unsupported WAV file: big-endian RIFX');
  if (riffId !== 'RIFF' && riffId !== 'RF64') throw new WavFormatError('not a WAV file: no RIFF header');
  if (riff.toString('latin1', 8, 12) !== 'WAVE') throw new WavFormatError('not a WAV file: RIFF type is not WAVE');

  let format: PcmFormat | null = null;
  let data: { offset: number; size: number } | null = null;
  let ds64DataSize: number | null = null;
  let offset = 12;
  for (;;) {
    const head = yield { offset, length: 8 };
    if (head.length < 8) break; // end of file (or of the buffer)
    const id = head.toString('latin1', 0, 4);
    const size = head.readUInt32LE(4);
    const body = offset + 8;
    if (id === 'fmt ') {
      format = parseFmtChunk(yield { offset: body, length: Math.min(size, MAX_FMT_BODY) }, size);
    } else if (id === 'ds64' && riffId === 'RF64') {
      const ds64 = yield { offset: body, length: 16 };
      if (ds64.length < 16) throw new WavFormatError('truncated ds64 chunk');
      const big = ds64.readBigUInt64LE(8);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new WavFormatError('RF64 data size too large');
      ds64DataSize = Number(big);
    } else if (id === 'data') {
      data = { offset: body, size };
      // fmt normally precedes data; if not, skip over data when its size is known
      if (format !== null || size === 0 || size === U32_MAX) break;
    }
    offset = body + size + (size & 1);
  }
  if (format === null) {
    throw new WavFormatError('not a WAV file: no fmt chunk');
  }
  if (data === null) throw new WavFormatError('not a WAV file: no data chunk');

  let dataBytes: number | null = data.size;
  if (riffId === 'RF64' && data.size === U32_MAX && ds64DataSize !== null) dataBytes = ds64DataSize;
  else if (data.size === 0 || data.size === U32_MAX) dataBytes = null;
  return { format, dataOffset: data.offset, dataBytes };
}

function describeTag(tag: number): string {
  const hex = `0x${tag.toString(16).padStart(4, '0')}`;
  return FORMAT_TAG_NAMES[tag] ? `${hex} (${FORMAT_TAG_NAMES[tag]})` : hex;
}

/** Interprets a fmt chunk body (`declared` is its size from the chunk header). */
function parseFmtChunk(b: Buffer, declared: number): PcmFormat {
  if (declared < 16) throw new WavFormatError(`invalid fmt chunk: ${declared} bytes`);
  if (b.length < Math.min(declared, 40)) throw new WavFormatError('truncated fmt chunk');
  let tag = b.readUInt16LE(0);
  const channels = b.readUInt16LE(2);
  const rate = b.readUInt32LE(4);
  const blockAlign = b.readUInt16LE(12);
  const bits = b.readUInt16LE(14);

  let validBits = bits;
  if (tag === WAVE_FORMAT_EXTENSIBLE) {
    if (declared < 40 || b.readUInt16LE(16) < 22) throw new WavFormatError('invalid WAVE_FORMAT_EXTENSIBLE fmt chunk');
    validBits = b.readUInt16LE(18) || bits; // 0 means "all bits"
    const subformat = b.readUInt32LE(24);
    if (!b.subarray(28, 40).equals(KSDATAFORMAT_GUID_TAIL) || subformat > 0xffff) {
      throw new WavFormatError('unsupported WAV encoding: unknown WAVE_FORMAT_EXTENSIBLE subformat GUID');
    }
    tag = subformat;
  }

  let sample: SampleFormat;
  if (tag === WAVE_FORMAT_PCM) {
    // Samples occupy whole bytes; fewer valid bits (e.g. 20 in 24, 24 in 32) are
    // left-justified in the container, so the container size decides the format.
    const container = channels > 0 ? blockAlign / channels : 0;
    const byContainer: Record<number, SampleFormat> = { 1: 'u8', 2: 's16le', 3: 's24le', 4: 's32le' };
    const found = byContainer[container];
    if (found === undefined || bits > container * 8 || bits <= (container - 1) * 8 || validBits > bits || validBits < 1) {
      throw new WavFormatError(
        `unsupported WAV encoding: ${bits}-bit integer PCM` +
          (validBits !== bits ? ` (${validBits} valid bits)` : '') +
          ` with block align ${blockAlign} for ${channels} channel(s)`,
      );
    }
    sample = found;
  } else if (tag === WAVE_FORMAT_IEEE_FLOAT) {
    if (bits !== 32 || blockAlign !== 4 * channels) {
      throw new WavFormatError(`unsupported WAV encoding: ${bits}-bit IEEE float (only 32-bit float is supported)`);
    }
    sample = 'f32le';
  } else {
    throw new WavFormatError(
      `unsupported WAV encoding: format tag ${describeTag(tag)}; supported are integer PCM (8/16/24/32-bit) and 32-bit float`,
    );
  }

  const format: PcmFormat = { format: sample, rate, channels };
  const problem = validateFormat(format);
  if (problem !== null) throw new WavFormatError(`unsupported WAV format (${channels} channels, ${rate} Hz): ${problem}`);
  return format;
}

/**
 * Parses the header of a WAV file from its first bytes. `buf` must contain
 * everything up to the start of the data chunk's body. Throws a
 * WavFormatError (code 'EWAVFORMAT') for non-WAV input and unsupported
 * encodings.
 */
export function parseWavHeader(buf: Buffer): WavHeaderInfo {
  const walker = walkWav();
  let step = walker.next();
  while (!step.done) {
    const { offset, length } = step.value;
    step = walker.next(buf.subarray(Math.min(offset, buf.length), Math.min(offset + length, buf.length)));
  }
  return step.value;
}

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Parses the header of an open file; returns the header and the length of PCM data to read. */
async function readHeader(fh: FileHandle, path: string): Promise<{ format: PcmFormat; dataOffset: number; length: number }> {
  let header: WavHeaderInfo;
  try {
    const walker = walkWav();
    let step = walker.next();
    while (!step.done) step = walker.next(await readAt(fh, step.value.offset, step.value.length));
    header = step.value;
  } catch (err) {
    if (err instanceof WavFormatError) err.message = `${path}: ${err.message}`;
    throw err;
  }
  const { size } = await fh.stat();
  // A truncated file yields what is there; an unknown size means "to end of file".
  const available = Math.max(0, size - header.dataOffset);
  let length = header.dataBytes === null ? available : Math.min(header.dataBytes, available);
  length -= length % frameBytes(header.format); // whole frames only
  return { format: header.format, dataOffset: header.dataOffset, length };
}

/**
 * Reads a whole WAV file. The data is cut to whole frames, and to what the
 * file actually contains when it is shorter than its header says.
 */
export async function readWavFile(path: string): Promise<{ format: PcmFormat; data: Buffer }> {
  const fh = await open(path, 'r');
  try {
    const { format, dataOffset, length } = await readHeader(fh, path);
    const data = await readAt(fh, dataOffset, length);
    return { format, data };
  } finally {
    await fh.close();
  }
}

/**
 * Opens a WAV file for streaming: `stream` yields only the PCM data (whole
 * frames in total, though individual chunks need not be frame-aligned). For a
 * header with unknown data size the stream ends at the file's size when it was
 * opened.
 */
export async function openWavStream(path: string): Promise<{ format: PcmFormat; stream: NodeJS.ReadableStream }> {
  const fh = await open(path, 'r');
  let header: { format: PcmFormat; dataOffset: number; length: number };
  try {
    header = await readHeader(fh, path);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  if (header.length === 0) {
    await fh.close();
    const empty = new Readable({
      read() {
        this.push(null);
      },
    });
    return { format: header.format, stream: empty };
  }
  // the stream owns the handle and closes it when done or destroyed
  const stream = fh.createReadStream({ start: header.dataOffset, end: header.dataOffset + header.length - 1 });
  return { format: header.format, stream };
}

/**
 * Reads a WAV header from a stream (a pipe: stdin), as sox and ffmpeg write
 * it there: data size 0 or 0xFFFFFFFF ("until end of stream"), or a size
 * that may be larger than what follows (sox's guess). Returns the format and
 * a stream of the PCM data only, in whole frames (a trailing partial frame is
 * dropped), ending at the declared size or at the end of the input,
 * whichever comes first. Throws WavFormatError for input that is not WAV.
 */
export async function readWavFromStream(input: NodeJS.ReadableStream, name = 'stdin'): Promise<{ format: PcmFormat; stream: Readable }> {
  const it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  /** stream offset of buf[0] */
  let base = 0;
  let ended = false;
  const pull = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Buffer);
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    return true;
  };
  const readSeq = async (offset: number, length: number): Promise<Buffer> => {
    // the walker asks for increasing offsets: what lies before is skipped
    for (;;) {
      if (offset > base) {
        const skip = Math.min(offset - base, buf.length);
        buf = buf.subarray(skip);
        base += skip;
      }
      if (offset === base && buf.length >= length) return buf.subarray(0, length);
      if (!(await pull())) return offset === base ? buf.subarray(0, length) : Buffer.alloc(0);
    }
  };
  let header: WavHeaderInfo;
  try {
    const walker = walkWav();
    let step = walker.next();
    while (!step.done) step = walker.next(Buffer.from(await readSeq(step.value.offset, step.value.length)));
    header = step.value;
  } catch (err) {
    if (err instanceof WavFormatError) err.message = `${name}: ${err.message}`;
    throw err;
  }
  await readSeq(header.dataOffset, 0);
  const fb = frameBytes(header.format);
  let left = header.dataBytes === null ? Infinity : header.dataBytes - (header.dataBytes % fb);
  async function* pcm(): AsyncGenerator<Buffer> {
    let carry: Buffer = buf;
    buf = Buffer.alloc(0);
    for (;;) {
      if (left <= 0) return;
      const whole = Math.min(carry.length - (carry.length % fb), left);
      if (whole > 0) {
        yield carry.subarray(0, whole);
        left -= whole;
        carry = carry.subarray(whole);
      }
      if (left <= 0) return;
      const r = await it.next();
      if (r.done) return; // a trailing partial frame is dropped
      const chunk = r.value as Buffer;
      carry = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    }
  }
  return { format: header.format, stream: Readable.from(pcm(), { objectMode: false }) };
}

/** Raw PCM from a stream, cut into whole frames (a trailing partial frame is dropped). */
export function wholeFrames(input: NodeJS.ReadableStream, fmt: PcmFormat): Readable {
  const fb = frameBytes(fmt);
  async function* pcm(): AsyncGenerator<Buffer> {
    let carry: Buffer = Buffer.alloc(0);
    for await (const c of input as AsyncIterable<Buffer>) {
      carry = carry.length ? Buffer.concat([carry, c]) : c;
      const whole = carry.length - (carry.length % fb);
      if (whole > 0) {
        yield carry.subarray(0, whole);
        carry = carry.subarray(whole);
      }
    }
  }
  return Readable.from(pcm(), { objectMode: false });
}
