import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FORMAT_INFO, SAMPLE_FORMATS, frameBytes, type PcmFormat, type SampleFormat } from '../../src/format';
import {
  DEFAULT_CHANNEL_MASKS,
  WavFileWriter,
  WavFormatError,
  openWavStream,
  parseWavHeader,
  readWavFile,
  readWavFromStream,
  wavHeader,
  wavHeaderLength,
  wholeFrames,
} from '../../src/wav';

/** Deterministic pseudo-random bytes. */
function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * Pseudo-random PCM. For f32le, random bytes could be NaNs or huge values, and
 * sox processes samples as 32-bit integers, so use 24-bit values scaled to
 * [-1, 1): those survive sox bit-exactly.
 */
function pcmData(fmt: PcmFormat, frames: number, seed = 1): Buffer {
  const n = frames * frameBytes(fmt);
  if (fmt.format !== 'f32le') return pattern(n, seed);
  const b = Buffer.alloc(n);
  const p = pattern(n, seed);
  for (let i = 0; i < n / 4; i++) b.writeFloatLE(p.readIntLE(i * 4, 3) / 8388608, i * 4);
  return b;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A RIFF chunk with pad byte. */
function chunk(id: string, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.write(id, 0, 'latin1');
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body, Buffer.alloc(body.length & 1)]);
}

function riff(...chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from('WAVE', 'latin1'), ...chunks]);
  const h = Buffer.alloc(8);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body]);
}

function fmtBody(tag: number, channels: number, rate: number, bits: number, blockAlign: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(tag, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE(rate * blockAlign, 8);
  b.writeUInt16LE(blockAlign, 12);
  b.writeUInt16LE(bits, 14);
  return b;
}

function extensibleBody(channels: number, rate: number, bits: number, validBits: number, sub: number, blockAlign: number): Buffer {
  const ext = Buffer.alloc(24);
  ext.writeUInt16LE(22, 0);
  ext.writeUInt16LE(validBits, 2);
  ext.writeUInt32LE(0, 4);
  ext.writeUInt32LE(sub, 8);
  Buffer.from('000010008000 00aa00389b71'.replace(/ /g, ''), 'hex').copy(ext, 12);
  return Buffer.concat([fmtBody(0xfffe, channels, rate, bits, blockAlign), ext]);
}

function expectWavError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof WavFormatError, String(err));
    assert.equal(err.code, 'EWAVFORMAT');
    assert.match(err.message, pattern);
    return true;
  });
}


describe('wav', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'audioloop-wav-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('wavHeader', () => {
    it('writes a canonical 44-byte PCM header for s16le stereo', () => {
      const h = wavHeader({ format: 's16le', rate: 44100, channels: 2 }, 1000);
      const expected = Buffer.from(
        '52494646' + '0c040000' + '57415645' + // RIFF, 36 + 1000, WAVE
          '666d7420' + '10000000' + '0100' + '0200' + '44ac0000' + '10b10200' + '0400' + '1000' + // fmt
          '64617461' + 'e8030000', // data, 1000
        'hex',
      );
      assert.deepEqual(h, expected);
      assert.equal(wavHeaderLength({ format: 's16le', rate: 44100, channels: 2 }), 44);
    });

    it('u8 mono is plain PCM with 8 bits', () => {
      const h = wavHeader({ format: 'u8', rate: 8000, channels: 1 }, 8000);
      assert.equal(h.length, 44);
      assert.equal(h.readUInt16LE(20), 1);
      assert.equal(h.readUInt16LE(32), 1); // block align
      assert.equal(h.readUInt16LE(34), 8);
      assert.equal(h.readUInt32LE(28), 8000); // byte rate
    });

    it('f32le stereo uses IEEE float (tag 3), cbSize 0 and a fact chunk', () => {
      const h = wavHeader({ format: 'f32le', rate: 48000, channels: 2 }, 800);
      assert.equal(h.length, 58);
      assert.equal(h.toString('latin1', 12, 16), 'fmt ');
      assert.equal(h.readUInt32LE(16), 18);
      assert.equal(h.readUInt16LE(20), 3);
      assert.equal(h.readUInt16LE(36), 0); // cbSize
      assert.equal(h.toString('latin1', 38, 42), 'fact');
      assert.equal(h.readUInt32LE(42), 4);
      assert.equal(h.readUInt32LE(46), 100); // frames
      assert.equal(h.toString('latin1', 50, 54), 'data');
      assert.equal(h.readUInt32LE(54), 800);
      assert.equal(h.readUInt32LE(4), 58 - 8 + 800);
    });

    it('s24le stereo uses WAVE_FORMAT_EXTENSIBLE with the PCM subformat GUID', () => {
      const h = wavHeader({ format: 's24le', rate: 96000, channels: 2 }, 600);
      assert.equal(h.length, 68);
      assert.equal(h.readUInt32LE(16), 40);
      assert.equal(h.readUInt16LE(20), 0xfffe);
      assert.equal(h.readUInt16LE(22), 2);
      assert.equal(h.readUInt32LE(24), 96000);
      assert.equal(h.readUInt32LE(28), 96000 * 6);
      assert.equal(h.readUInt16LE(32), 6);
      assert.equal(h.readUInt16LE(34), 24);
      assert.equal(h.readUInt16LE(36), 22); // cbSize
      assert.equal(h.readUInt16LE(38), 24); // valid bits
      assert.equal(h.readUInt32LE(40), 0x3); // FL FR
      // KSDATAFORMAT_SUBTYPE_PCM {00000001-0000-0010-8000-00AA00389B71}
      assert.equal(h.subarray(44, 60).toString('hex'), '0100000000001000800000aa00389b71');
      assert.equal(h.toString('latin1', 60, 64), 'data');
      assert.equal(h.readUInt32LE(64), 600);
    });

    it('f32le 6ch uses WAVE_FORMAT_EXTENSIBLE with the IEEE float GUID, 5.1 mask and fact', () => {
      const h = wavHeader({ format: 'f32le', rate: 48000, channels: 6 }, 240);
      assert.equal(h.length, 80);
      assert.equal(h.readUInt16LE(20), 0xfffe);
      assert.equal(h.readUInt32LE(40), 0x3f);
      assert.equal(h.subarray(44, 60).toString('hex'), '0300000000001000800000aa00389b71');
      assert.equal(h.toString('latin1', 60, 64), 'fact');
      assert.equal(h.readUInt32LE(68), 10);
    });

    it('uses extensible exactly when channels > 2 or integer bits > 16', () => {
      for (const format of SAMPLE_FORMATS) {
        for (let channels = 1; channels <= 8; channels++) {
          const fmt = { format, rate: 48000, channels };
          const h = wavHeader(fmt, 0);
          const info = FORMAT_INFO[format];
          const ext = channels > 2 || (!info.float && info.bits > 16);
          const tag = ext ? 0xfffe : info.float ? 3 : 1;
          assert.equal(h.readUInt16LE(20), tag, `${format} ${channels}ch`);
          assert.equal(h.length, wavHeaderLength(fmt));
          if (ext) assert.equal(h.readUInt32LE(40), DEFAULT_CHANNEL_MASKS[channels]);
        }
      }
    });

    it('has a channel mask with one bit per channel for 1-8 channels', () => {
      for (let ch = 1; ch <= 8; ch++) {
        const bits = DEFAULT_CHANNEL_MASKS[ch].toString(2).replace(/0/g, '').length;
        assert.equal(bits, ch, `mask for ${ch} channels`);
      }
      assert.deepEqual(DEFAULT_CHANNEL_MASKS.slice(1), [0x4, 0x3, 0x7, 0x33, 0x37, 0x3f, 0x70f, 0x63f]);
    });

    it('counts the pad byte of odd-sized data in the RIFF size only', () => {
      const h = wavHeader({ format: 'u8', rate: 8000, channels: 1 }, 1001);
      assert.equal(h.readUInt32LE(4), 36 + 1001 + 1);
      assert.equal(h.readUInt32LE(40), 1001);
    });

    it('writes 0xFFFFFFFF for unknown (null) and oversized lengths', () => {
      const fmt: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
      for (const n of [null, 2 ** 32, 2 ** 32 - 20]) {
        const h = wavHeader(fmt, n);
        assert.equal(h.readUInt32LE(4), 0xffffffff, String(n));
        assert.equal(h.readUInt32LE(40), 0xffffffff, String(n));
      }
      const just = wavHeader(fmt, 2 ** 32 - 44); // RIFF size 0xFFFFFFFC still fits
      assert.equal(just.readUInt32LE(4), 2 ** 32 - 8);
      assert.equal(just.readUInt32LE(40), 2 ** 32 - 44);
    });

    it('rejects invalid formats and sizes', () => {
      assert.throws(() => wavHeader({ format: 's16le', rate: 44100, channels: 9 }, 0), RangeError);
      assert.throws(() => wavHeader({ format: 's16le', rate: 1000, channels: 2 }, 0), RangeError);
      assert.throws(() => wavHeader({ format: 's8' as SampleFormat, rate: 44100, channels: 2 }, 0), RangeError);
      assert.throws(() => wavHeader({ format: 's16le', rate: 44100, channels: 2 }, -1), RangeError);
      assert.throws(() => wavHeader({ format: 's16le', rate: 44100, channels: 2 }, 1.5), RangeError);
    });

    it('is parsed back by parseWavHeader', () => {
      for (const format of SAMPLE_FORMATS) {
        for (const channels of [1, 2, 6, 8]) {
          const fmt = { format, rate: 22050, channels };
          const info = parseWavHeader(wavHeader(fmt, frameBytes(fmt) * 10));
          assert.deepEqual(info, { format: fmt, dataOffset: wavHeaderLength(fmt), dataBytes: frameBytes(fmt) * 10 });
        }
      }
    });
  });

  describe('parseWavHeader', () => {
    const s16 = fmtBody(1, 2, 44100, 16, 4);

    it('skips LIST and unknown chunks in any order, honouring pad bytes', () => {
      const list = chunk('LIST', Buffer.concat([Buffer.from('INFOICMT', 'latin1'), Buffer.from([5, 0, 0, 0]), Buffer.from('hello\0')]));
      const junk = chunk('junk', Buffer.alloc(3)); // odd: followed by a pad byte
      const buf = riff(junk, list, chunk('fmt ', s16), chunk('bext', Buffer.alloc(7)), chunk('data', Buffer.alloc(8)));
      const info = parseWavHeader(buf);
      assert.deepEqual(info.format, { format: 's16le', rate: 44100, channels: 2 });
      assert.equal(info.dataBytes, 8);
      assert.equal(info.dataOffset, buf.length - 8);
    });

    it('finds fmt after a data chunk of known size', () => {
      const buf = riff(chunk('data', Buffer.alloc(10)), chunk('fmt ', s16));
      assert.deepEqual(parseWavHeader(buf), { format: { format: 's16le', rate: 44100, channels: 2 }, dataOffset: 20, dataBytes: 10 });
    });

    it('needs only the bytes up to the data', () => {
      const full = riff(chunk('fmt ', s16), chunk('data', Buffer.alloc(100)));
      assert.equal(parseWavHeader(full.subarray(0, 44)).dataBytes, 100);
    });

    it('reads data size 0 and 0xFFFFFFFF as "until end of file"', () => {
      for (const size of [0, 0xffffffff]) {
        const buf = riff(chunk('fmt ', s16), chunk('data', Buffer.alloc(0)));
        buf.writeUInt32LE(size, 40);
        assert.equal(parseWavHeader(buf).dataBytes, null);
      }
    });

    it('accepts fewer valid bits in a container (20 in 24, 24 in 32)', () => {
      const b20 = riff(chunk('fmt ', extensibleBody(2, 48000, 24, 20, 1, 6)), chunk('data', Buffer.alloc(0)));
      assert.equal(parseWavHeader(b20).format.format, 's24le');
      const b24 = riff(chunk('fmt ', extensibleBody(2, 48000, 32, 24, 1, 8)), chunk('data', Buffer.alloc(0)));
      assert.equal(parseWavHeader(b24).format.format, 's32le');
      // non-extensible 12-bit samples live in 16-bit containers
      const b12 = riff(chunk('fmt ', fmtBody(1, 1, 8000, 12, 2)), chunk('data', Buffer.alloc(0)));
      assert.equal(parseWavHeader(b12).format.format, 's16le');
    });

    it('reads RF64 with the data size from ds64', () => {
      const ds64 = Buffer.alloc(28);
      ds64.writeBigUInt64LE(5000000000n, 0); // RIFF size
      ds64.writeBigUInt64LE(4999999960n, 8); // data size
      const buf = riff(chunk('ds64', ds64), chunk('fmt ', s16), chunk('data', Buffer.alloc(0)));
      buf.write('RF64', 0, 'latin1');
      buf.writeUInt32LE(0xffffffff, 4);
      buf.writeUInt32LE(0xffffffff, buf.length - 4);
      assert.deepEqual(parseWavHeader(buf), {
        format: { format: 's16le', rate: 44100, channels: 2 },
        dataOffset: buf.length,
        dataBytes: 4999999960,
      });
    });

    it('rejects unsupported encodings with EWAVFORMAT', () => {
      const cases: [Buffer, RegExp][] = [
        [fmtBody(6, 1, 8000, 8, 1), /unsupported WAV encoding: format tag 0x0006 \(A-law\)/],
        [fmtBody(7, 1, 8000, 8, 1), /format tag 0x0007 \(mu-law\)/],
        [fmtBody(0x11, 1, 8000, 4, 256), /IMA ADPCM/],
        [fmtBody(3, 2, 44100, 64, 16), /64-bit IEEE float/],
        [fmtBody(1, 2, 44100, 16, 6), /16-bit integer PCM with block align 6/],
        [fmtBody(1, 2, 44100, 40, 10), /40-bit integer PCM/],
        [fmtBody(1, 9, 44100, 16, 18), /channels must be an integer 1-8/],
        [fmtBody(1, 2, 4000, 16, 4), /rate must be an integer 8000-192000/],
        [extensibleBody(2, 44100, 16, 16, 2, 4).fill(0x11, 28, 40), /unknown WAVE_FORMAT_EXTENSIBLE subformat/],
        [extensibleBody(2, 44100, 8, 8, 6, 2), /format tag 0x0006/],
      ];
      for (const [body, re] of cases) {
        expectWavError(() => parseWavHeader(riff(chunk('fmt ', body), chunk('data', Buffer.alloc(0)))), re);
      }
    });

    it('rejects non-WAV and broken input with EWAVFORMAT', () => {
      expectWavError(() => parseWavHeader(Buffer.alloc(0)), /too short/);
      expectWavError(() => parseWavHeader(Buffer.from('ID3\x04 some mp3 stuff', 'latin1')), /no RIFF header/);
      const rifx = riff(chunk('fmt ', s16), chunk('data', Buffer.alloc(0)));
      rifx.write('RIFX', 0, 'latin1');
      expectWavError(() => parseWavHeader(rifx), /big-endian/);
      const avi = riff(chunk('fmt ', s16));
      avi.write('AVI ', 8, 'latin1');
      expectWavError(() => parseWavHeader(avi), /not WAVE/);
      expectWavError(() => parseWavHeader(riff(chunk('fmt ', s16))), /no data chunk/);
      expectWavError(() => parseWavHeader(riff(chunk('data', Buffer.alloc(4)))), /no fmt chunk/);
      expectWavError(() => parseWavHeader(riff(chunk('fmt ', Buffer.alloc(14)), chunk('data', Buffer.alloc(0)))), /invalid fmt chunk/);
      // header cut short inside the fmt chunk
      expectWavError(() => parseWavHeader(riff(chunk('fmt ', s16), chunk('data', Buffer.alloc(0))).subarray(0, 30)), /fmt/);
    });
  });

  describe('WavFileWriter and readers', () => {
    for (const format of SAMPLE_FORMATS) {
      for (const channels of [1, 2, 6]) {
        it(`round-trips ${format} ${channels}ch written in unaligned chunks`, async () => {
          const fmt: PcmFormat = { format, rate: 48000, channels };
          const data = pcmData(fmt, 1001, channels * 7 + format.length);
          const path = join(dir, `rt-${format}-${channels}.wav`);
          const w = await WavFileWriter.open(path, fmt);
          // chunk sizes chosen so that almost none is frame-aligned
          let off = 0;
          for (const n of [1, 2, 3, 5, 7, 11, 13, 17, 100]) {
            await w.write(data.subarray(off, off + n));
            off += n;
            assert.equal(w.dataBytes, off);
          }
          await w.write(data.subarray(off));
          assert.equal(w.dataBytes, data.length);
          await w.close();
          assert.equal(w.dataBytes, data.length);
          assert.equal(w.frames, 1001);

          const file = readFileSync(path);
          const pad = data.length & 1;
          assert.equal(file.length, wavHeaderLength(fmt) + data.length + pad);
          if (pad) assert.equal(file[file.length - 1], 0);
          assert.equal(file.readUInt32LE(4), file.length - 8);
          assert.deepEqual(file.subarray(0, wavHeaderLength(fmt)), wavHeader(fmt, data.length));

          const read = await readWavFile(path);
          assert.deepEqual(read.format, fmt);
          assert.ok(read.data.equals(data), 'readWavFile data');

          const { format: sf, stream } = await openWavStream(path);
          assert.deepEqual(sf, fmt);
          assert.ok((await collect(stream)).equals(data), 'openWavStream data');
        });
      }
    }

    it('truncates a partial trailing frame on close', async () => {
      const fmt: PcmFormat = { format: 's16le', rate: 44100, channels: 2 };
      const path = join(dir, 'partial.wav');
      const w = await WavFileWriter.open(path, fmt);
      await w.write(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
      assert.equal(w.dataBytes, 11);
      assert.equal(w.frames, 2);
      await w.close();
      assert.equal(w.dataBytes, 8);
      const file = readFileSync(path);
      assert.equal(file.length, 44 + 8);
      assert.equal(file.readUInt32LE(40), 8);
      assert.deepEqual(file.subarray(44), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
    });

    it('writes a zero pad byte after odd-sized data even when it cut a partial frame', async () => {
      // s24le mono: 3-byte frames; 7 bytes -> 2 frames (6 bytes, even); 10 bytes -> 3 frames (9, odd)
      const fmt: PcmFormat = { format: 's24le', rate: 48000, channels: 1 };
      const path = join(dir, 'pad.wav');
      const w = await WavFileWriter.open(path, fmt);
      await w.write(Buffer.alloc(10, 0xee));
      await w.close();
      const file = readFileSync(path);
      const h = wavHeaderLength(fmt);
      assert.equal(file.length, h + 9 + 1);
      assert.equal(file.readUInt32LE(h - 4), 9);
      assert.equal(file.readUInt32LE(4), file.length - 8);
      assert.equal(file[h + 8], 0xee);
      assert.equal(file[h + 9], 0, 'pad byte must be zero, not the cut sample byte');
    });

    it('writes a valid empty file', async () => {
      const fmt: PcmFormat = { format: 'f32le', rate: 48000, channels: 2 };
      const path = join(dir, 'empty.wav');
      const w = await WavFileWriter.open(path, fmt);
      await w.close();
      assert.deepEqual(readFileSync(path), wavHeader(fmt, 0));
      const read = await readWavFile(path);
      assert.equal(read.data.length, 0);
      const { stream } = await openWavStream(path);
      assert.equal((await collect(stream)).length, 0);
    });

    it('serializes writes that are not awaited and copies their buffers', async () => {
      const fmt: PcmFormat = { format: 'u8', rate: 8000, channels: 1 };
      const path = join(dir, 'order.wav');
      const w = await WavFileWriter.open(path, fmt);
      const buf = Buffer.alloc(100);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        buf.fill(i);
        pending.push(w.write(buf)); // same buffer reused at once
      }
      assert.equal(w.dataBytes, 5000);
      await Promise.all(pending);
      await w.close();
      const { data } = await readWavFile(path);
      assert.equal(data.length, 5000);
      for (let i = 0; i < 50; i++) assert.ok(data.subarray(i * 100, i * 100 + 100).every((b) => b === i), `chunk ${i}`);
    });

    it('close is idempotent; write after close rejects', async () => {
      const fmt: PcmFormat = { format: 's16le', rate: 8000, channels: 1 };
      const path = join(dir, 'idem.wav');
      const w = await WavFileWriter.open(path, fmt);
      await w.write(Buffer.alloc(20, 1));
      const p1 = w.close();
      const p2 = w.close();
      assert.equal(p1, p2);
      await p1;
      await w.close();
      assert.equal(w.closed, true);
      await assert.rejects(w.write(Buffer.alloc(2)), /write after close/);
      assert.equal(statSync(path).size, 44 + 20);
    });

    it('close() without awaiting writes still includes them', async () => {
      const fmt: PcmFormat = { format: 's16le', rate: 8000, channels: 1 };
      const path = join(dir, 'nowait.wav');
      const w = await WavFileWriter.open(path, fmt);
      void w.write(Buffer.alloc(6, 1));
      void w.write(Buffer.alloc(6, 2));
      await w.close();
      const { data } = await readWavFile(path);
      assert.deepEqual(data, Buffer.concat([Buffer.alloc(6, 1), Buffer.alloc(6, 2)]));
    });

    it('leaves a readable file when the feeding stream fails with ECONNRESET', async () => {
      const fmt: PcmFormat = { format: 's16le', rate: 44100, channels: 2 };
      const path = join(dir, 'reset.wav');
      const w = await WavFileWriter.open(path, fmt);
      const chunks = [pattern(1000, 3), pattern(1001, 4), pattern(7, 5)]; // 2008 bytes: 502 frames
      const source = new Readable({ read() {} });
      const finished = new Promise<Error>((resolve) => {
        source.on('data', (c: Buffer) => void w.write(c));
        source.on('error', (err) => {
          void w.close().then(() => resolve(err));
        });
      });
      for (const c of chunks) source.push(c);
      setImmediate(() => {
        const err = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
        source.destroy(err);
      });
      const err = await finished;
      assert.equal((err as NodeJS.ErrnoException).code, 'ECONNRESET');

      const expected = Buffer.concat(chunks).subarray(0, 2008);
      const { format, data } = await readWavFile(path);
      assert.deepEqual(format, fmt);
      assert.ok(data.equals(expected));
      assert.equal(statSync(path).size, 44 + 2008);
      assert.equal(execFileSync('soxi', ['-s', path], { encoding: 'utf8', stdio: 'pipe' }).trim(), '502');
    });

    it('a file whose writer never closed is readable up to what was written', async () => {
      const fmt: PcmFormat = { format: 's16le', rate: 44100, channels: 1 };
      const path = join(dir, 'open.wav');
      const w = await WavFileWriter.open(path, fmt);
      await w.write(Buffer.from([1, 0, 2, 0, 3]));
      const header = parseWavHeader(readFileSync(path));
      assert.equal(header.dataBytes, null); // provisional header: length unknown
      const { data } = await readWavFile(path);
      assert.deepEqual(data, Buffer.from([1, 0, 2, 0]));
      // sox reads it too (warning about the premature end, silenced by -V1)
      const raw = execFileSync('sox', ['-V1', path, '-t', 'raw', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
      assert.deepEqual(raw, Buffer.from([1, 0, 2, 0]));
      await w.close();
    });

    it('rejects an invalid format on open without creating the file', async () => {
      const path = join(dir, 'bad.wav');
      await assert.rejects(WavFileWriter.open(path, { format: 's16le', rate: 44100, channels: 0 }), RangeError);
      assert.throws(() => statSync(path), /ENOENT/);
    });

    it('reads a file shorter than its header claims, up to whole frames', async () => {
      const fmt: PcmFormat = { format: 's24le', rate: 48000, channels: 2 };
      const path = join(dir, 'short.wav');
      const data = pattern(6 * 10 + 4);
      writeFileSync(path, Buffer.concat([wavHeader(fmt, 6 * 100), data]));
      const read = await readWavFile(path);
      assert.ok(read.data.equals(data.subarray(0, 60)));
      const { stream } = await openWavStream(path);
      assert.ok((await collect(stream)).equals(data.subarray(0, 60)));
    });

    it('does not read trailing chunks after data as audio', async () => {
      const path = join(dir, 'trailing.wav');
      const data = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
      writeFileSync(path, riff(chunk('fmt ', fmtBody(1, 2, 44100, 16, 4)), chunk('data', data), chunk('LIST', Buffer.alloc(30, 9))));
      assert.deepEqual((await readWavFile(path)).data, data);
      assert.deepEqual(await collect((await openWavStream(path)).stream), data);
    });

    it('names the file in read errors', async () => {
      const path = join(dir, 'alaw.wav');
      writeFileSync(path, riff(chunk('fmt ', fmtBody(6, 1, 8000, 8, 1)), chunk('data', Buffer.alloc(10))));
      for (const open of [readWavFile, openWavStream]) {
        await assert.rejects(open(path), (err: unknown) => {
          assert.ok(err instanceof WavFormatError);
          assert.equal(err.code, 'EWAVFORMAT');
          assert.ok(err.message.startsWith(`${path}: unsupported WAV encoding`), err.message);
          return true;
        });
      }
      await assert.rejects(readWavFile(join(dir, 'nope.wav')), { code: 'ENOENT' });
    });
  });

  // A real external check: sox (and soxi) must be installed; these tests fail, not skip, without them.
  describe('interoperability with sox', () => {

    const ENCODING: Record<SampleFormat, string> = {
      u8: 'Unsigned Integer PCM',
      s16le: 'Signed Integer PCM',
      s24le: 'Signed Integer PCM',
      s32le: 'Signed Integer PCM',
      f32le: 'Floating Point PCM',
    };
    const soxi = (flag: string, path: string) => execFileSync('soxi', [flag, path], { encoding: 'utf8', stdio: 'pipe' }).trim();

    for (const format of SAMPLE_FORMATS) {
      for (const channels of [1, 2, 6]) {
        it(`soxi reads our ${format} ${channels}ch file, and sox decodes the same bytes`, async () => {
          const fmt: PcmFormat = { format, rate: 96000, channels };
          const data = pcmData(fmt, 777, channels);
          const path = join(dir, `sox-${format}-${channels}.wav`);
          const w = await WavFileWriter.open(path, fmt);
          await w.write(data.subarray(0, 5));
          await w.write(data.subarray(5));
          await w.close();

          assert.equal(soxi('-r', path), '96000');
          assert.equal(soxi('-c', path), String(channels));
          assert.equal(soxi('-b', path), String(FORMAT_INFO[format].bits));
          assert.equal(soxi('-e', path), ENCODING[format]);
          assert.equal(soxi('-s', path), '777');
          // sox keeps the encoding when writing raw: the bytes must be exactly ours
          const raw = execFileSync('sox', ['-V1', path, '-t', 'raw', '-'], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 24 });
          assert.ok(raw.equals(data), `sox decoded ${raw.length} bytes, wrote ${data.length}`);
        });
      }
    }

    const generated: { args: string[]; fmt: PcmFormat; frames: number }[] = [
      { args: ['-n', '-r', '44100', '-c', '2', '-b', '16'], fmt: { format: 's16le', rate: 44100, channels: 2 }, frames: 4410 },
      { args: ['-n', '-r', '48000', '-c', '1', '-b', '8'], fmt: { format: 'u8', rate: 48000, channels: 1 }, frames: 4800 },
      { args: ['-n', '-r', '48000', '-c', '2', '-b', '24'], fmt: { format: 's24le', rate: 48000, channels: 2 }, frames: 4800 },
      { args: ['-n', '-r', '96000', '-c', '6', '-b', '32'], fmt: { format: 's32le', rate: 96000, channels: 6 }, frames: 9600 },
      { args: ['-n', '-r', '22050', '-c', '2', '-e', 'floating-point', '-b', '32'], fmt: { format: 'f32le', rate: 22050, channels: 2 }, frames: 2205 },
      { args: ['-n', '-r', '8000', '-c', '8', '-b', '16'], fmt: { format: 's16le', rate: 8000, channels: 8 }, frames: 800 },
    ];
    for (const g of generated) {
      it(`parses sox's ${g.args.slice(1).join(' ')} file with the expected byte count`, async () => {
        const path = join(dir, `gen-${g.fmt.format}-${g.fmt.channels}.wav`);
        execFileSync('sox', ['-V1', ...g.args, path, 'synth', '0.1', 'sine', '440'], { stdio: 'pipe' });
        const expectedBytes = g.frames * frameBytes(g.fmt);
        const header = parseWavHeader(readFileSync(path));
        assert.deepEqual(header.format, g.fmt);
        assert.equal(header.dataBytes, expectedBytes);
        const { format, data } = await readWavFile(path);
        assert.deepEqual(format, g.fmt);
        assert.equal(data.length, expectedBytes);
        const raw = execFileSync('sox', ['-V1', path, '-t', 'raw', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
        assert.ok(data.equals(raw));
        assert.ok(data.some((b) => b !== FORMAT_INFO[g.fmt.format].silence), 'a sine is not silence');
      });
    }

    it('parses an odd-length u8 file from sox, with its pad byte', async () => {
      const path = join(dir, 'gen-odd.wav');
      execFileSync('sox', ['-V1', '-r', '8000', '-n', '-c', '1', '-b', '8', path, 'synth', '801s', 'sine', '440'], { stdio: 'pipe' });
      assert.equal(statSync(path).size, 44 + 801 + 1);
      const { data } = await readWavFile(path);
      assert.equal(data.length, 801);
    });

    it("parses sox's piped output, whose header length is a placeholder", async () => {
      // sox cannot seek back on a pipe, so the header's data size is a guess (0x7ffff000)
      const wav = execFileSync('sox', ['-V1', '-r', '8000', '-n', '-c', '1', '-b', '16', '-t', 'wav', '-', 'synth', '80s', 'sine', '440'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const path = join(dir, 'piped.wav');
      writeFileSync(path, wav);
      const header = parseWavHeader(wav);
      assert.equal(header.dataOffset, 44);
      assert.ok(header.dataBytes === null || header.dataBytes > 160);
      const { data } = await readWavFile(path);
      assert.equal(data.length, 160);
      assert.ok(data.equals(wav.subarray(44)));
    });
  });
});

describe('readWavFromStream', () => {
  const fmt = { format: 's16le' as const, rate: 44100, channels: 2 };
  const pcm = Buffer.alloc(4 * 1000);
  for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 7) & 0xff;
  async function collect(s: NodeJS.ReadableStream): Promise<Buffer> {
    const out: Buffer[] = [];
    for await (const c of s as AsyncIterable<Buffer>) out.push(c);
    return Buffer.concat(out);
  }
  function chunked(buf: Buffer, size: number): Readable {
    const parts: Buffer[] = [];
    for (let o = 0; o < buf.length; o += size) parts.push(buf.subarray(o, o + size));
    return Readable.from(parts);
  }
  for (const size of [1, 3, 44, 4096]) {
    it(`reads the header and all data from a stream in ${size}-byte chunks (unknown length)`, async () => {
      const { format, stream } = await readWavFromStream(chunked(Buffer.concat([wavHeader(fmt, null), pcm]), size));
      assert.deepEqual(format, fmt);
      assert.ok((await collect(stream)).equals(pcm));
    });
  }
  it('stops at the declared data size and skips chunks before data (LIST)', async () => {
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([5, 0, 0, 0]), Buffer.from('abcde'), Buffer.alloc(1)]);
    const h = wavHeader(fmt, 400);
    // insert LIST before the data chunk
    const withList = Buffer.concat([h.subarray(0, h.length - 8), list, h.subarray(h.length - 8)]);
    const { stream } = await readWavFromStream(chunked(Buffer.concat([withList, pcm]), 7));
    assert.ok((await collect(stream)).equals(pcm.subarray(0, 400)));
  });
  it('drops a trailing partial frame and accepts a size larger than what follows', async () => {
    const { stream } = await readWavFromStream(chunked(Buffer.concat([wavHeader(fmt, 0x7ffff000), pcm.subarray(0, 402)]), 100));
    assert.equal((await collect(stream)).length, 400);
  });
  it('refuses input that is not WAV, naming it', async () => {
    await assert.rejects(readWavFromStream(chunked(Buffer.from('hello world, not a wav file'), 5), 'stdin'), /stdin: not a WAV file/);
  });
  it('wholeFrames cuts raw input into whole frames', async () => {
    const out = await collect(wholeFrames(chunked(pcm.subarray(0, 1001), 3), fmt));
    assert.ok(out.equals(pcm.subarray(0, 1000)));
  });
});
