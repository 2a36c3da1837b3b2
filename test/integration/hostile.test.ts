/**
 * Hostile server-end connections against the real daemon (spawned as
 * `audioloop daemon`, on the real headless PipeWire): each gets a clear
 * `ERR CODE ERRNO message` line (or is closed after the handshake timeout)
 * and the daemon keeps serving both instances afterwards.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer, type LoopServer } from '../../src/client';
import { fetchStatus } from '../../src/cli/main';
import { errnoOf } from '../../src/errors';
import { controlSocketPath, loopSocketPath, MAX_LINE } from '../../src/protocol';
import { requireSoundServer } from '../helpers/soundserver';
import { run, sleep, spawnTracked, waitFor, type Tracked } from '../helpers/proc';
import { checkCounter, counterPcm } from '../helpers/pcm';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'audioloop');
const HANDSHAKE_TIMEOUT_MS = 5000; // the daemon's default

/** A raw connection to a loop socket that records everything. */
class Raw {
  data = Buffer.alloc(0);
  ended = false;
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  readonly sock: net.Socket;
  constructor(p: string) {
    this.sock = net.connect(p);
    this.sock.on('data', (c: Buffer) => (this.data = Buffer.concat([this.data, c])));
    this.sock.on('end', () => (this.ended = true));
    this.sock.on('close', () => (this.closed = true));
    this.sock.on('error', (e) => (this.error = e));
  }
  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.sock.connecting) return resolve();
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }
  firstLine(): string | null {
    const nl = this.data.indexOf(0x0a);
    return nl < 0 ? null : this.data.subarray(0, nl).toString('utf8');
  }
  async line(timeoutMs = 5000): Promise<string> {
    return waitFor(() => this.firstLine(), timeoutMs, 'a reply line');
  }
  async closedWithin(timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, 'the daemon to close the connection');
  }
  /** writes everything, respecting backpressure; stops quietly when the daemon hangs up */
  async send(buf: Buffer, chunk = 65536): Promise<number> {
    let sent = 0;
    while (sent < buf.length && !this.closed && !this.sock.destroyed) {
      const part = buf.subarray(sent, sent + chunk);
      const ok = this.sock.write(part);
      sent += part.length;
      if (!ok) {
        await new Promise<void>((r) => {
          const done = (): void => {
            this.sock.off('drain', done);
            this.sock.off('close', done);
            r();
          };
          this.sock.once('drain', done);
          this.sock.once('close', done);
        });
      }
    }
    return sent;
  }
}

function errLine(code: string, message: RegExp): RegExp {
  return new RegExp(`^ERR ${code} ${errnoOf(code)} ${message.source}`);
}

describe('hostile server-end clients (real daemon, real PipeWire)', function () {
  this.timeout(60000);
  let tmp: string;
  let sockDir: string;
  let daemon: Tracked;

  before(requireSoundServer);
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-hostile-'));
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // a fresh daemon per test (the root hooks stop tracked processes after each)
  beforeEach(async function () {
    sockDir = fs.mkdtempSync(path.join(tmp, 'sock-'));
    daemon = spawnTracked(process.execPath, [BIN, 'daemon', '--sound-server', 'system', '-s', sockDir, '-n', '2', '--log-level', 'debug']);
    await waitFor(() => fs.existsSync(controlSocketPath(sockDir)) && fs.existsSync(loopSocketPath(sockDir, 1)), 15000, `the daemon to listen (${daemon.stderr()})`);
  });

  const loopPath = (n: number): string => loopSocketPath(sockDir, n);

  async function raw(n: number): Promise<Raw> {
    const r = new Raw(loopPath(n));
    await r.connected();
    return r;
  }

  /** the daemon is alive, both loops idle, and a server end can be opened on each */
  async function stillServing(): Promise<void> {
    assert.equal(daemon.child.exitCode, null, `the daemon exited: ${daemon.stderr().slice(-2000)}`);
    assert.doesNotMatch(daemon.stderr(), /Uncaught|TypeError|RangeError|at .*\.js:\d+/, 'no crash trace in the daemon log');
    await waitFor(async () => (await fetchStatus(sockDir)).loops.every((l) => l.state === 'idle'), 10000, 'every loop idle');
    for (const n of [0, 1]) {
      const srv = await openServer(n, { mode: 'read', socketDir: sockDir, app: 'after-hostile' });
      assert.equal(srv.node, `audioloop${n}`);
      await srv.close();
    }
  }

  /** a normal server end + paplay on loop n: the PCM arrives frame-exact */
  async function playThrough(n: number): Promise<void> {
    const srv: LoopServer = await openServer(n, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: sockDir, app: 'hostile-check' });
    const chunks: Buffer[] = [];
    srv.readable.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<Error>((r) => srv.readable.on('error', r));
    await waitFor(async () => (await run('pactl', ['list', 'short', 'sinks'])).stdout.includes(`audioloop${n}\t`), 5000, 'the sink');
    const frames = 24000;
    const file = path.join(tmp, `counter${n}.raw`);
    fs.writeFileSync(file, counterPcm('s16le', 2, frames));
    const play = await run('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', `audioloop${n}`, file]);
    assert.equal(play.code, 0, play.stderr);
    const err = await ended;
    assert.equal((err as { code?: string }).code, 'ECONNRESET');
    const c = checkCounter(Buffer.concat(chunks), 's16le', 2);
    assert.equal(c.first, 0, JSON.stringify(c));
    assert.equal(c.frames, frames, JSON.stringify(c));
    await srv.close();
  }

  it('garbage bytes: ERR EPROTO, then the connection is closed', async function () {
    const r = await raw(0);
    r.sock.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x0a, 0x01, 0x02]));
    assert.match(await r.line(), errLine('EPROTO', /the line is not valid UTF-8/));
    await r.closedWithin();
    const r2 = await raw(1);
    r2.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(await r2.line(), errLine('EPROTO', /expected "OPEN \.\.\.", got "GET \/ HTTP\/1\.1"/));
    await r2.closedWithin();
    await stillServing();
  });

  it('a 1 MB line with no newline: ERR E2BIG as soon as the limit is passed', async function () {
    const r = await raw(0);
    const sent = await r.send(Buffer.alloc(1 << 20, 0x41), 4096);
    assert.match(await r.line(), errLine('E2BIG', new RegExp(`handshake line longer than ${MAX_LINE} bytes`)));
    await r.closedWithin();
    assert.ok(sent >= MAX_LINE, `sent ${sent}`);
    await stillServing();
  });

  it('a handshake byte by byte with delays is accepted', async function () {
    const r = await raw(0);
    const line = 'OPEN mode=read format=s16le rate=44100 channels=1 app=slow\r\n';
    for (const ch of line) {
      r.sock.write(ch);
      await sleep(8); // ~0.5 s in all, well inside the 5 s handshake timeout even on a loaded machine
    }
    assert.equal(await r.line(), 'OK instance=0 node=audioloop0 mode=read format=s16le rate=44100 channels=1 frame=2');
    const st = await fetchStatus(sockDir);
    assert.equal(st.loops[0]!.state, 'waiting');
    assert.equal(st.loops[0]!.server?.app, 'slow');
    r.sock.destroy();
    await stillServing();
  });

  it('a connection that sends nothing: ERR ETIMEDOUT after the handshake timeout, then closed', async function () {
    const t0 = Date.now();
    const silent = await raw(0);
    const partial = await raw(1);
    partial.sock.write('OPEN mode=re'); // and then nothing
    const crowd = await Promise.all(Array.from({ length: 20 }, (_, i) => raw(i % 2)));
    // meanwhile the loops are not held by them: normal servers open and close on both
    for (const n of [0, 1]) {
      const srv = await openServer(n, { mode: 'write', socketDir: sockDir });
      await srv.close();
    }
    assert.ok(Date.now() - t0 < HANDSHAKE_TIMEOUT_MS, 'served before the silent ones timed out');
    for (const r of [silent, partial, ...crowd]) {
      assert.match(await r.line(HANDSHAKE_TIMEOUT_MS + 10000), errLine('ETIMEDOUT', /no OPEN line within 5000 ms/));
      await r.closedWithin();
    }
    const took = Date.now() - t0;
    assert.ok(took >= HANDSHAKE_TIMEOUT_MS - 200 && took < HANDSHAKE_TIMEOUT_MS + 10000, `closed after ${took} ms`);
    // the rest of the line after the timeout must not open the loop
    partial.sock.write('ad\n', () => undefined);
    await sleep(200);
    assert.deepEqual((await fetchStatus(sockDir)).loops.map((l) => l.state), ['idle', 'idle']);
    await stillServing();
  });

  it('invalid requests: ERR EINVAL with the reason (format, rate, channels, read+write)', async function () {
    const cases: [string, RegExp][] = [
      ['OPEN mode=read format=mp3', /format must be one of u8, s16le, s24le, s32le, f32le/],
      ['OPEN mode=write rate=1', /rate must be an integer 8000-192000/],
      ['OPEN mode=read channels=64', /channels must be an integer 1-8/],
      ['OPEN mode=readwrite', /read\+write is not permitted/],
    ];
    for (const [line, msg] of cases) {
      const r = await raw(0);
      r.sock.write(line + '\n');
      assert.match(await r.line(), errLine('EINVAL', msg), line);
      await r.closedWithin();
    }
    const dup = await raw(1);
    dup.sock.write('OPEN mode=read mode=write\n');
    assert.match(await dup.line(), errLine('EPROTO', /duplicate field "mode"/));
    const nul = await raw(1);
    nul.sock.write('OPEN mode=read\0\n');
    assert.match(await nul.line(), errLine('EPROTO', /NUL byte/));
    await stillServing();
  });

  it('the control socket: garbage is ERR EPROTO, a 64 KB line ERR E2BIG, an unknown command ERR EINVAL', async function () {
    const garbage = new Raw(controlSocketPath(sockDir));
    await garbage.connected();
    garbage.sock.write(Buffer.from([0xc3, 0x28, 0x0a]));
    assert.match(await garbage.line(), errLine('EPROTO', /the line is not valid UTF-8/));
    await garbage.closedWithin();
    const big = new Raw(controlSocketPath(sockDir));
    await big.connected();
    await big.send(Buffer.alloc(65536, 0x53), 1024);
    assert.match(await big.line(), errLine('E2BIG', /handshake line longer than/));
    await big.closedWithin();
    const unknown = new Raw(controlSocketPath(sockDir));
    await unknown.connected();
    unknown.sock.write('REBOOT\nPING\n');
    await waitFor(() => unknown.data.toString().split('\n').length >= 3, 5000, 'two replies');
    const [first, second] = unknown.data.toString().split('\n');
    assert.match(first!, errLine('EINVAL', /unknown command "REBOOT" \(STATUS, PING\)/));
    assert.equal(second, 'PONG', 'the control connection keeps serving after an unknown command');
    unknown.sock.destroy();
    await stillServing();
  });

  it('an unknown instance: ENOENT on the socket, ENODEV from openServer', async function () {
    const r = new Raw(loopPath(7));
    await assert.rejects(r.connected(), { code: 'ENOENT' });
    await assert.rejects(openServer(7, { mode: 'read', socketDir: sockDir }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ENODEV');
      assert.match(e.message, /no loop instance 7/);
      return true;
    });
    await stillServing();
  });

  it('half-close right after OPEN: OK, then the loop closes and is free again; half-close mid-line: ERR EPROTO', async function () {
    for (const mode of ['read', 'write']) {
      const r = await raw(0);
      r.sock.end(`OPEN mode=${mode}\n`);
      assert.match(await r.line(), new RegExp(`^OK instance=0 node=audioloop0 mode=${mode} `));
      await r.closedWithin();
      await waitFor(async () => (await fetchStatus(sockDir)).loops[0]!.state === 'idle', 5000, `loop 0 idle after a half-closed ${mode} server`);
    }
    const early = await raw(1);
    early.sock.end('OPEN mode=wr'); // EOF in the middle of the line
    assert.match(await early.line(), errLine('EPROTO', /the connection ended before a complete OPEN line \(12 bytes without a newline\)/));
    await early.closedWithin();
    const empty = await raw(1);
    empty.sock.end(); // a probe: connects and closes without a word
    await empty.closedWithin();
    assert.equal(empty.data.length, 0);
    await stillServing();
  });

  it('50 connections at once: one OK, 49 ERR EBUSY; garbage and silence on the other loop', async function () {
    const conns = await Promise.all(Array.from({ length: 50 }, () => raw(0)));
    for (const [i, c] of conns.entries()) c.sock.write(`OPEN mode=read app=c${i}\n`);
    const lines = await Promise.all(conns.map((c) => c.line(10000)));
    const ok = lines.filter((l) => l.startsWith('OK instance=0 '));
    const busy = lines.filter((l) => errLine('EBUSY', /audioloop0: the server end is already open by c\d+/).test(l));
    assert.equal(ok.length, 1, lines.join('\n'));
    assert.equal(busy.length, 49, lines.join('\n'));
    // and a mix of hostile connections on loop 1 at the same time
    const mix = await Promise.all(Array.from({ length: 50 }, () => raw(1)));
    mix.forEach((c, i) => {
      if (i % 3 === 0) c.sock.write(Buffer.from([i, 0xff, 0x0a]));
      else if (i % 3 === 1) c.sock.write(`OPEN mode=read rate=${i}\n`);
      else c.sock.destroy(); // gone at once
    });
    for (const [i, c] of mix.entries()) {
      if (i % 3 === 2) continue;
      assert.match(await c.line(10000), i % 3 === 0 ? errLine('EPROTO', /./) : errLine('EINVAL', /rate must be/));
    }
    await Promise.all(conns.filter((c) => !c.firstLine()!.startsWith('OK')).map((c) => c.closedWithin(10000)));
    for (const c of conns) c.sock.destroy();
    await stillServing();
  });

  it('after all of that, a normal openServer + paplay works on the same instance and on another', async function () {
    // a round of hostile clients first, in this daemon's life
    const hostile = await Promise.all([raw(0), raw(0), raw(1), raw(1)]);
    hostile[0]!.sock.write(Buffer.alloc(4096, 0x42));
    hostile[1]!.sock.end('OPEN mode=write\n');
    hostile[2]!.sock.write('OPEN mode=rw\n');
    hostile[3]!.sock.write('OPEN mode=read\n');
    assert.match(await hostile[0]!.line(), /^ERR E2BIG /);
    assert.match(await hostile[2]!.line(), /^ERR EINVAL /);
    assert.match(await hostile[3]!.line(), /^OK instance=1 /);
    hostile[3]!.sock.destroy();
    await waitFor(async () => (await fetchStatus(sockDir)).loops.every((l) => l.state === 'idle'), 10000, 'idle loops');
    await playThrough(0);
    await playThrough(1);
    assert.equal(daemon.child.exitCode, null);
  });
});
