/**
 * The handshake parser/serializer (src/protocol.ts): every field, every
 * refusal, line framing, round trips, and a seeded fuzz test.
 */
import assert from 'node:assert/strict';
import { MAX_RATE, MIN_RATE, SAMPLE_FORMATS, validateFormat } from '../../src/format';
import {
  decodeLine,
  formatErr,
  formatOk,
  formatOpen,
  formatReset,
  formatStart,
  LineReader,
  MAX_LINE,
  parseErr,
  parseOk,
  parseOpen,
  parseStart,
  ProtocolError,
  RESET_LINE,
  type OpenRequest,
} from '../../src/protocol';
import { errnoOf } from '../../src/errors';
import { mulberry32 } from '../helpers/rng';

function refuses(line: string, code: string, message?: RegExp): void {
  assert.throws(
    () => parseOpen(line),
    (e: unknown) => {
      assert.ok(e instanceof ProtocolError, `a ProtocolError, got ${String(e)}`);
      assert.equal(e.code, code, `${JSON.stringify(line)}: ${e.message}`);
      if (message) assert.match(e.message, message);
      return true;
    },
  );
}

/** Feeds bytes through a LineReader in the given chunk sizes and parses the first line. */
function handshake(bytes: Buffer, chunks: number[] = [bytes.length]): { req: OpenRequest; rest: Buffer } | null {
  const r = new LineReader();
  let off = 0;
  let i = 0;
  while (off < bytes.length) {
    const n = Math.max(1, chunks[i++ % chunks.length]!);
    r.feed(bytes.subarray(off, off + n));
    off += n;
    const line = r.take();
    if (line !== null) {
      const rest = Buffer.concat([r.rest(), bytes.subarray(off)]);
      return { req: parseOpen(line), rest };
    }
  }
  return null;
}

describe('protocol: OPEN', function () {
  it('parses every field', function () {
    assert.deepEqual(parseOpen('OPEN mode=write format=s24le rate=96000 channels=6 nonblock=1 app=my%20app pid=1234'), {
      mode: 'write',
      format: 's24le',
      rate: 96000,
      channels: 6,
      nonblock: true,
      app: 'my app',
      pid: 1234,
    });
  });

  it('defaults: s16le, 48000 Hz, 2 channels, blocking, no app, no pid', function () {
    assert.deepEqual(parseOpen('OPEN mode=read'), { mode: 'read', format: 's16le', rate: 48000, channels: 2, nonblock: false });
  });

  it('accepts every sample format and the rate/channel limits', function () {
    for (const format of SAMPLE_FORMATS) assert.equal(parseOpen(`OPEN mode=read format=${format}`).format, format);
    for (const rate of [8000, 11025, 44100, 192000]) assert.equal(parseOpen(`OPEN mode=read rate=${rate}`).rate, rate);
    for (let ch = 1; ch <= 8; ch++) assert.equal(parseOpen(`OPEN mode=read channels=${ch}`).channels, ch);
    assert.equal(parseOpen('OPEN mode=read nonblock=0').nonblock, false);
  });

  it('fields in any order, extra spaces between them', function () {
    assert.deepEqual(parseOpen('OPEN   channels=1  rate=8000 format=u8 mode=write  '), { mode: 'write', format: 'u8', rate: 8000, channels: 1, nonblock: false });
  });

  it('app: %-decoded, any Unicode, cut to 64 characters', function () {
    assert.equal(parseOpen('OPEN mode=read app=caf%C3%A9%20%E2%99%AB').app, 'café ♫');
    assert.equal(parseOpen('OPEN mode=read app=Grüße').app, 'Grüße');
    const long = 'x'.repeat(100);
    assert.equal(parseOpen(`OPEN mode=read app=${long}`).app, 'x'.repeat(64));
    assert.equal('app' in parseOpen('OPEN mode=read app='), false, 'an empty app is no app');
    const emoji = '😀'.repeat(70); // surrogate pairs are not split
    assert.equal(parseOpen(`OPEN mode=read app=${encodeURIComponent(emoji)}`).app, '😀'.repeat(64));
  });

  describe('EINVAL', function () {
    it('read+write in any spelling, with a message that says why', function () {
      for (const m of ['readwrite', 'rw', 'read+write', 'read%2Bwrite']) refuses(`OPEN mode=${m}`, 'EINVAL', /read\+write is not permitted/);
    });
    it('a missing or unknown mode', function () {
      refuses('OPEN format=s16le', 'EINVAL', /mode must be read or write/);
      for (const m of ['', 'READ', 'r', 'write2', 'both']) refuses(`OPEN mode=${m}`, 'EINVAL', /mode must be read or write/);
    });
    it('a bad format', function () {
      for (const f of ['', 's16', 'S16LE', 's16be', 'mp3', 'float']) refuses(`OPEN mode=read format=${f}`, 'EINVAL', /format must be one of u8, s16le, s24le, s32le, f32le/);
    });
    it('a bad rate', function () {
      for (const r of ['', '7999', '192001', '0', '-48000', '48000.5', '4.8e4', '0x1F40', 'abc', '1234567890', '%2048000', '48000%00'])
        refuses(`OPEN mode=read rate=${r}`, 'EINVAL', /rate must be an integer 8000-192000/);
    });
    it('bad channels', function () {
      for (const c of ['', '0', '9', '-1', '2.0', 'two', '99999999999']) refuses(`OPEN mode=read channels=${c}`, 'EINVAL', /channels must be an integer 1-8/);
    });
    it('bad nonblock, pid, app', function () {
      for (const v of ['', '2', 'true', 'yes', '01']) refuses(`OPEN mode=read nonblock=${v}`, 'EINVAL', /nonblock must be 0 or 1/);
      for (const v of ['', '0', '-5', 'abc', '1.5', '12345678901']) refuses(`OPEN mode=read pid=${v}`, 'EINVAL', /pid must be a positive integer/);
      for (const v of ['a%0Ab', '%00', 'x%1By', 'del%7F']) refuses(`OPEN mode=read app=${v}`, 'EINVAL', /app must not contain control characters/);
    });
  });

  describe('EPROTO', function () {
    it('not an OPEN line', function () {
      for (const l of ['', 'open mode=read', 'OPENmode=read', 'HELLO', 'GET / HTTP/1.1', ' OPENX mode=read', '\uFEFFOPEN mode=read'])
        refuses(l, 'EPROTO', /expected "OPEN \.\.\."/);
    });
    it('malformed, duplicate and unknown fields', function () {
      refuses('OPEN mode', 'EPROTO', /malformed field "mode"/);
      refuses('OPEN =read', 'EPROTO', /malformed field/);
      refuses('OPEN mode=read mode=read', 'EPROTO', /duplicate field "mode"/);
      refuses('OPEN mode=read rate=48000 rate=44100', 'EPROTO', /duplicate field "rate"/);
      refuses('OPEN mode=read volume=1', 'EPROTO', /unknown field "volume"/);
      refuses('OPEN mode=read Mode=read', 'EPROTO', /unknown field "Mode"/);
      refuses('OPEN mode=read __proto__=x', 'EPROTO', /unknown field "__proto__"/);
      refuses('OPEN mode=read app=%', 'EPROTO', /bad %-escape in field "app"/);
      refuses('OPEN mode=read app=%E2%82', 'EPROTO', /bad %-escape/);
    });
    it('NUL bytes, tabs and other control characters in the line', function () {
      refuses('OPEN mode=read\0', 'EPROTO', /NUL byte/);
      refuses('OPEN\0mode=read', 'EPROTO', /NUL byte/);
      refuses('OPEN\tmode=read', 'EPROTO', /control character 0x09/);
      refuses('OPEN mode=read\r format=u8', 'EPROTO', /control character 0x0d/);
      refuses('OPEN mode=read \x1b[31m', 'EPROTO', /control character 0x1b/);
    });
  });

  it('E2BIG: a line of MAX_LINE bytes or more (the limit counts the newline)', function () {
    const pad = (n: number): string => `OPEN mode=read app=${'a'.repeat(n - 'OPEN mode=read app='.length)}`;
    assert.equal(parseOpen(pad(MAX_LINE - 1)).mode, 'read');
    refuses(pad(MAX_LINE), 'E2BIG', new RegExp(`longer than ${MAX_LINE} bytes`));
    refuses(pad(100000), 'E2BIG');
  });

  it('every refusal maps to a known errno for the ERR line', function () {
    for (const code of ['EINVAL', 'EPROTO', 'E2BIG', 'EBUSY', 'ENODEV', 'ETIMEDOUT']) assert.ok(errnoOf(code) > 0, code);
  });
});

describe('protocol: line framing (LineReader)', function () {
  const line = Buffer.from('OPEN mode=write format=f32le rate=44100 channels=1 app=x pid=9\n');
  const want: OpenRequest = { mode: 'write', format: 'f32le', rate: 44100, channels: 1, nonblock: false, app: 'x', pid: 9 };

  it('one byte at a time, and every two-way split, give the same request', function () {
    assert.deepEqual(handshake(line, [1])?.req, want);
    for (let cut = 1; cut < line.length; cut++) assert.deepEqual(handshake(line, [cut, line.length])?.req, want, `cut at ${cut}`);
  });

  it('nothing before the newline: no line yet', function () {
    const r = new LineReader();
    r.feed(line.subarray(0, -1));
    assert.equal(r.take(), null);
    r.feed(Buffer.from('\n'));
    assert.deepEqual(parseOpen(r.take()!), want);
  });

  it('CRLF is accepted; the bytes after the line are kept (they may be PCM)', function () {
    const pcm = Buffer.from([0, 1, 2, 0x0a, 0xff, 0x0d]);
    const bytes = Buffer.concat([Buffer.from('OPEN mode=write\r\n'), pcm]);
    for (const chunks of [[bytes.length], [1], [3, 5], [16, 1]]) {
      const got = handshake(bytes, chunks);
      assert.equal(got?.req.mode, 'write');
      assert.ok(got.rest.equals(pcm), `rest intact with chunks ${chunks}`);
    }
  });

  it('E2BIG as soon as MAX_LINE bytes arrive without a newline, whatever the chunking', function () {
    for (const chunk of [1, 7, 1000, 4096]) {
      const r = new LineReader();
      let fed = 0;
      const err = (() => {
        try {
          while (fed < 2 * MAX_LINE) {
            r.feed(Buffer.alloc(chunk, 0x61));
            fed += chunk;
          }
        } catch (e) {
          return e;
        }
        return null;
      })();
      assert.ok(err instanceof ProtocolError && err.code === 'E2BIG', `chunk ${chunk}: ${String(err)}`);
      assert.ok(fed < MAX_LINE + chunk, `refused after ${fed + chunk} bytes, not later`);
    }
    const r = new LineReader();
    assert.throws(() => r.feed(Buffer.concat([Buffer.alloc(MAX_LINE, 0x61), Buffer.from('\n')])), { code: 'E2BIG' });
    const ok = new LineReader();
    ok.feed(Buffer.concat([Buffer.alloc(MAX_LINE - 1, 0x61), Buffer.from('\n')]));
    assert.equal(ok.take()!.length, MAX_LINE - 1);
  });

  it('EPROTO for bytes that are not UTF-8, for NUL and for other control bytes', function () {
    const bad: Buffer[] = [
      Buffer.from([0x4f, 0x50, 0x45, 0x4e, 0x20, 0xff, 0x0a]), // 0xff never occurs in UTF-8
      Buffer.from('OPEN mode=read app=\xe9\n', 'latin1'), // a lone Latin-1 é
      Buffer.from([0x4f, 0x50, 0x45, 0x4e, 0xc3, 0x0a]), // truncated sequence
      Buffer.from([0x4f, 0xed, 0xa0, 0x80, 0x0a]), // an encoded surrogate
      Buffer.from([0x4f, 0xc0, 0xaf, 0x0a]), // overlong "/"
      Buffer.from('OPEN mode=read\0\n'),
      Buffer.from('\0\n'),
      Buffer.from('OPEN mode=read\x07\n'),
    ];
    for (const b of bad) {
      const r = new LineReader();
      r.feed(b);
      assert.throws(() => r.take(), (e: unknown) => e instanceof ProtocolError && e.code === 'EPROTO', b.toString('hex'));
    }
    assert.throws(() => decodeLine(Buffer.from([0xff])), /not valid UTF-8/);
    assert.throws(() => decodeLine(Buffer.from('a\0b')), /NUL byte/);
    assert.equal(decodeLine(Buffer.from('OPEN app=café\r')), 'OPEN app=café');
  });

  it('several lines in one chunk come out one by one', function () {
    const r = new LineReader();
    r.feed(Buffer.from('OK instance=0 node=audioloop0 mode=read format=u8 rate=8000 channels=1 frame=1\nSTART app=x\nPCM'));
    assert.equal(parseOk(r.take()!).node, 'audioloop0');
    assert.deepEqual(parseStart(r.take()!), { app: 'x' });
    assert.equal(r.take(), null);
    assert.equal(r.rest().toString(), 'PCM');
  });
});

describe('protocol: OPEN latency=MS', function () {
  it('takes an integer 1-1000 ms; absent means no request', function () {
    assert.equal(parseOpen('OPEN mode=read latency=5').latencyMs, 5);
    assert.equal(parseOpen('OPEN mode=write latency=1000').latencyMs, 1000);
    assert.equal(parseOpen('OPEN mode=read latency=1').latencyMs, 1);
    assert.equal('latencyMs' in parseOpen('OPEN mode=read'), false);
  });

  it('refuses anything else with EINVAL naming the range; twice is EPROTO', function () {
    for (const v of ['0', '1001', '-5', '5.5', 'abc', '', '0x10', '99999999999']) {
      assert.throws(
        () => parseOpen(`OPEN mode=read latency=${v}`),
        (e: ProtocolError) => e.code === 'EINVAL' && /latency must be an integer number of milliseconds, 1-1000/.test(e.message),
        v,
      );
    }
    assert.throws(() => parseOpen('OPEN mode=read latency=5 latency=6'), (e: ProtocolError) => e.code === 'EPROTO');
  });
});

describe('protocol: replies and round trips', function () {
  it('OPEN: formatOpen -> parseOpen is the identity', function () {
    const reqs: OpenRequest[] = [
      { mode: 'read', format: 's16le', rate: 48000, channels: 2, nonblock: false },
      { mode: 'write', format: 'u8', rate: 8000, channels: 1, nonblock: true, app: 'a b=c%d\u00e9', pid: 1 },
      { mode: 'read', format: 'f32le', rate: 192000, channels: 8, nonblock: false, app: 'audioloop record', pid: 4194304 },
      { mode: 'write', format: 's16le', rate: 48000, channels: 2, nonblock: false, latencyMs: 5 },
      { mode: 'read', format: 's16le', rate: 44100, channels: 1, nonblock: false, latencyMs: 1000, pid: 7 },
    ];
    for (const r of reqs) {
      const line = formatOpen(r);
      assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'));
      assert.deepEqual(parseOpen(line.slice(0, -1)), r);
    }
  });

  it('OK: every field round-trips; malformed OK lines are EPROTO', function () {
    for (const format of SAMPLE_FORMATS) {
      const ok = { instance: 3, node: 'audioloop3', mode: 'write' as const, format, rate: 22050, channels: 5, frame: 5 * [1, 2, 3, 4, 4][SAMPLE_FORMATS.indexOf(format)]! };
      const line = formatOk(ok);
      assert.deepEqual(parseOk(line.slice(0, -1)), ok);
    }
    for (const l of [
      'OK',
      'NOPE instance=0',
      'OK instance=0 node=audioloop0 mode=rw format=s16le rate=48000 channels=2 frame=4',
      'OK instance=x node=audioloop0 mode=read format=s16le rate=48000 channels=2 frame=4',
      'OK instance=0 node=audioloop0 mode=read format=s16le rate=48000 channels=2 frame=5',
      'OK instance=0 node=audioloop0 mode=read format=s16le rate=1 channels=2 frame=4',
      'OK instance=0 mode=read format=s16le rate=48000 channels=2 frame=4',
    ])
      assert.throws(() => parseOk(l), { code: 'EPROTO' }, l);
  });

  it('ERR: code, errno and message round-trip; newlines in the message cannot break the line', function () {
    const line = formatErr('EBUSY', errnoOf('EBUSY'), 'audioloop0: already open\r\nby someone');
    assert.equal(line.split('\n').length, 2);
    assert.deepEqual(parseErr(line.slice(0, -1)), { code: 'EBUSY', errno: errnoOf('EBUSY'), message: 'audioloop0: already open by someone' });
    assert.equal(parseErr('OK instance=0'), null);
    assert.equal(parseErr('ERR EBUSY'), null);
  });

  it('START: with and without app/pid; RESET', function () {
    assert.equal(formatStart({}), 'START\n');
    assert.deepEqual(parseStart('START'), {});
    const line = formatStart({ app: 'Firefox Nightly', pid: 321 });
    assert.equal(line, 'START app=Firefox%20Nightly pid=321\n');
    assert.deepEqual(parseStart(line.slice(0, -1)), { app: 'Firefox Nightly', pid: 321 });
    assert.deepEqual(parseStart('START pid=abc'), {}, 'a bad pid is dropped');
    assert.throws(() => parseStart('STOP'), { code: 'EPROTO' });
    assert.equal(formatReset(), 'RESET\n');
    assert.equal(RESET_LINE, 'RESET');
  });
});

const prng = mulberry32;

describe('protocol: fuzz (seeded)', function () {
  const SEED = Number(process.env.AUDIOLOOP_FUZZ_SEED ?? 20261125);
  const N = 20000;

  /** An independent check of an accepted request against the raw line. */
  function checkAccepted(line: string, req: OpenRequest): void {
    assert.equal(validateFormat(req), null, `accepted an invalid format from ${JSON.stringify(line)}`);
    assert.ok(req.mode === 'read' || req.mode === 'write');
    assert.equal(typeof req.nonblock, 'boolean');
    assert.ok(Number.isInteger(req.rate) && req.rate >= MIN_RATE && req.rate <= MAX_RATE);
    if (req.app !== undefined) assert.ok(!/[\x00-\x1f\x7f]/.test(req.app) && [...req.app].length <= 64);
    if (req.pid !== undefined) assert.ok(Number.isSafeInteger(req.pid) && req.pid > 0);
    // the line said so: each format field present in the line equals the parsed value
    const words = line.split(' ').filter(Boolean);
    assert.equal(words[0], 'OPEN');
    const seen = new Set<string>();
    for (const w of words.slice(1)) {
      const [k, ...v] = w.split('=');
      const val = decodeURIComponent(v.join('='));
      assert.ok(!seen.has(k!), `duplicate ${k} accepted`);
      seen.add(k!);
      if (k === 'rate') assert.equal(String(req.rate), String(Number(val)));
      else if (k === 'channels') assert.equal(String(req.channels), String(Number(val)));
      else if (k === 'format') assert.equal(req.format, val);
      else if (k === 'mode') assert.equal(req.mode, val);
      else if (k === 'nonblock') assert.equal(req.nonblock, val === '1');
      else assert.ok(['app', 'pid'].includes(k!), `unknown field ${k} accepted`);
    }
    assert.ok(seen.has('mode'), 'accepted without a mode');
    // and it survives a round trip
    assert.deepEqual(parseOpen(formatOpen(req).slice(0, -1)), req);
  }

  it(`${N} random and mutated handshakes: only ProtocolErrors, never an invalid request (seed ${SEED})`, function () {
    this.timeout(60000);
    const rnd = prng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const int = (n: number): number => Math.floor(rnd() * n);
    const keys = ['mode', 'format', 'rate', 'channels', 'nonblock', 'app', 'pid', 'Mode', 'x', '', 'rate '];
    const values: Record<string, readonly string[]> = {
      mode: ['read', 'write', 'readwrite', 'rw', '', 'READ', 're%61d'],
      format: [...SAMPLE_FORMATS, 's16', '', 'f64le', 'S16LE', 's%31%36le'],
      rate: ['8000', '48000', '192000', '7999', '192001', '0', '-1', '4.8e4', '048000', '', '99999999999', '44100 '],
      channels: ['1', '2', '8', '0', '9', '-2', '2.5', '', '02'],
      nonblock: ['0', '1', '2', '', 'true'],
      app: ['x', 'a%20b', '%', '%zz', '%0A', '%00', 'é', '😀'.repeat(70), 'a'.repeat(900)],
      pid: ['1', '0', '-1', '123456789', '1234567890', 'abc', ''],
    };
    const field = (): string => {
      const k = pick(keys);
      const v = values[k] ? pick(values[k]!) : String(int(1000));
      return rnd() < 0.05 ? k : `${k}=${v}`;
    };
    const mutate = (b: Buffer): Buffer => {
      const arr = [...b];
      const ops = int(4);
      for (let i = 0; i < ops; i++) {
        const at = int(arr.length + 1);
        switch (int(5)) {
          case 0:
            arr.splice(at, 1); // delete
            break;
          case 1:
            arr.splice(at, 0, int(256)); // insert any byte
            break;
          case 2:
            if (arr.length) arr[Math.min(at, arr.length - 1)] = int(256); // replace
            break;
          case 3:
            arr.splice(at, 0, ...Buffer.from(pick([' ', '=', '%', '\r', '\0', '\n', 'OPEN ', '\xc3', '\u00e9']))); // structure bytes
            break;
          default:
            arr.splice(at, 0, ...arr.slice(int(arr.length), int(arr.length) + int(20))); // duplicate a slice
        }
      }
      return Buffer.from(arr);
    };
    const stats = { accepted: 0, incomplete: 0 } as Record<string, number>;
    for (let i = 0; i < N; i++) {
      let bytes: Buffer;
      const kind = rnd();
      if (kind < 0.1) {
        bytes = Buffer.from(Array.from({ length: int(1400) }, () => int(256))); // noise
      } else {
        const fields = Array.from({ length: int(9) }, field);
        if (rnd() < 0.7) fields.unshift(`mode=${pick(['read', 'write'])}`);
        let text = `${rnd() < 0.95 ? 'OPEN' : pick(['open', 'OPEN\t', 'OPENED', ''])} ${fields.join(rnd() < 0.9 ? ' ' : '  ')}${rnd() < 0.2 ? '\r' : ''}\n`;
        if (rnd() < 0.02) text = text.replace('\n', '') + 'x'.repeat(int(3000)) + '\n';
        bytes = Buffer.from(text);
        if (rnd() < 0.5) bytes = mutate(bytes);
        if (rnd() < 0.3) bytes = Buffer.concat([bytes, Buffer.from(Array.from({ length: int(64) }, () => int(256)))]);
      }
      const chunks = rnd() < 0.3 ? [1 + int(3)] : [1 + int(bytes.length + 1)];
      let got: ReturnType<typeof handshake>;
      try {
        got = handshake(bytes, chunks);
      } catch (e) {
        if (!(e instanceof ProtocolError)) assert.fail(`case ${i}: ${String(e)} for ${bytes.toString('hex').slice(0, 200)}`);
        assert.ok(['EPROTO', 'EINVAL', 'E2BIG'].includes(e.code), `case ${i}: code ${e.code}`);
        assert.ok(e.message.length > 0 && !/[\r\n]/.test(e.message), `case ${i}: a one-line message`);
        stats[e.code] = (stats[e.code] ?? 0) + 1;
        continue;
      }
      if (!got) {
        stats.incomplete!++;
        continue;
      }
      stats.accepted!++;
      const nl = bytes.indexOf(0x0a);
      const line = bytes.subarray(0, nl).toString('utf8').replace(/\r$/, '');
      try {
        checkAccepted(line, got.req);
      } catch (e) {
        assert.fail(`case ${i} (seed ${SEED}): ${(e as Error).message}\nline: ${JSON.stringify(line)}`);
      }
    }
    if (process.env.AUDIOLOOP_FUZZ_STATS) console.log(JSON.stringify(stats));
    // the generator must exercise both sides, or the test proves nothing
    assert.ok(stats.accepted! > N / 50, `accepted ${stats.accepted}`);
    for (const code of ['EPROTO', 'EINVAL', 'E2BIG']) assert.ok((stats[code] ?? 0) > 20, `${code}: ${stats[code]} (${JSON.stringify(stats)})`);
  });
});
