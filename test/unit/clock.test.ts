/**
 * OPEN clock=1 (issue 13): the protocol field, the loop's clock before
 * START (read mode: SILENCE lines at the loop's rate; write mode: the
 * server's data consumed at that rate) and the client library, over the
 * memory backend, on both data planes (native: MemoryCable; js: the loop
 * moves the PCM). The default (no clock=) still waits.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBackend } from '../../src/backend/memory';
import { openServer, type LoopServer } from '../../src/client';
import { DEFAULT_CONFIG } from '../../src/config';
import { Daemon } from '../../src/daemon';
import { framesDue } from '../../src/loop';
import { formatOpen, formatSilence, parseOpen, parseSilence, ProtocolError, type OpenRequest } from '../../src/protocol';
import { describeClock } from '../../src/cli/main';
import { checkCounter, checkCounterSkippingSilence, counterPcm } from '../helpers/pcm';
import { sleep, waitFor } from '../helpers/proc';

type CodedError = Error & { code?: string; errno?: number; syscall?: string };

const RATE = 48000;
const FRAME = 4; // s16le stereo

describe('protocol: OPEN clock=0|1', function () {
  it('takes 0 or 1 (default 0: absent); anything else is EINVAL, twice is EPROTO', function () {
    assert.equal(parseOpen('OPEN mode=read clock=1').clock, true);
    assert.equal('clock' in parseOpen('OPEN mode=read clock=0'), false);
    assert.equal('clock' in parseOpen('OPEN mode=write'), false);
    for (const v of ['2', '-1', 'yes', 'true', '', '01', '1.0']) {
      assert.throws(
        () => parseOpen(`OPEN mode=read clock=${v}`),
        (e: ProtocolError) => e.code === 'EINVAL' && /clock must be 0 .* or 1/.test(e.message),
        v,
      );
    }
    assert.throws(() => parseOpen('OPEN mode=read clock=1 clock=1'), (e: ProtocolError) => e.code === 'EPROTO');
  });

  it('formatOpen -> parseOpen keeps clock=1; SILENCE lines round-trip; framesDue counts from the start', function () {
    const r: OpenRequest = { mode: 'read', format: 's24le', rate: 44100, channels: 1, nonblock: false, waitMs: 500, clock: true, app: 'x', pid: 3 };
    assert.match(formatOpen(r), / wait=500 clock=1 app=x /);
    assert.deepEqual(parseOpen(formatOpen(r).slice(0, -1)), r);
    assert.equal(formatSilence(480), 'SILENCE frames=480\n');
    assert.equal(parseSilence('SILENCE frames=480'), 480);
    for (const other of ['SILENCE', 'SILENCE frames=0', 'SILENCE frames=-1', 'SILENCE frames=', 'SILENCE frames=01', 'START', 'TIMEOUT wait=5'])
      assert.equal(parseSilence(other), null, other);
    assert.equal(framesDue(0, 48000), 0);
    assert.equal(framesDue(10, 48000), 480);
    assert.equal(framesDue(10, 11025), 110);
    assert.equal(framesDue(20, 11025), 220); // 220.5: whole frames, the half comes with the next tick
    assert.equal(framesDue(1000, 11025), 11025);
    // summing per-tick differences of framesDue never drifts from the total
    let sent = 0;
    for (let t = 10; t <= 60000; t += 10) sent += framesDue(t + 0.37, 22050) - sent;
    assert.equal(sent, framesDue(60000.37, 22050));
  });
});

for (const dataPlane of ['native', 'js'] as const) {
  describe(`clock=1 over the daemon, the memory backend and the client library (data_plane = ${dataPlane})`, function () {
    this.timeout(20000);
    let backend: MemoryBackend;
    let daemon: Daemon;
    let dir: string;
    const open: LoopServer[] = [];
    const socks: net.Socket[] = [];

    beforeEach(async function () {
      backend = new MemoryBackend({ quantum: 256 });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-clock-'));
      daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 2, dataPlane }, socketDir: dir, connect: () => backend, handshakeTimeoutMs: 500 });
      await daemon.start();
    });
    afterEach(async function () {
      for (const s of open.splice(0)) await s.close();
      for (const s of socks.splice(0)) s.destroy();
      backend.clock.halt();
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    /** a raw protocol connection: what the daemon sends, as text lines and raw bytes */
    async function raw(line: string, n = 0): Promise<{ sock: net.Socket; bytes: () => Buffer }> {
      const sock = net.connect(path.join(dir, `audioloop${n}`));
      socks.push(sock);
      const parts: Buffer[] = [];
      sock.on('data', (c: Buffer) => parts.push(c));
      sock.on('error', () => undefined);
      await new Promise<void>((r) => sock.once('connect', r));
      sock.write(line + '\n');
      return { sock, bytes: () => Buffer.concat(parts) };
    }

    /** the lines of a read-mode connection up to START, and the bytes after it */
    function split(all: Buffer): { lines: string[]; pcm: Buffer } {
      const lines: string[] = [];
      let off = 0;
      for (;;) {
        const nl = all.indexOf(0x0a, off);
        if (nl < 0) break;
        const line = all.subarray(off, nl).toString('latin1');
        lines.push(line);
        off = nl + 1;
        if (line.startsWith('START')) break;
      }
      return { lines, pcm: all.subarray(off) };
    }

    it('read: SILENCE frames=N lines at the loop\'s rate (from the start, no drift), START then the client\'s PCM; no SILENCE after START', async function () {
      const t0 = performance.now();
      const c = await raw('OPEN mode=read clock=1');
      await sleep(1000);
      const elapsed = performance.now() - t0;
      const before = split(c.bytes()).lines;
      assert.match(before[0]!, /^OK /);
      const silence = before.slice(1).map((l) => parseSilence(l));
      assert.ok(silence.every((n) => n !== null), before.slice(1, 5).join(' | '));
      const frames = silence.reduce<number>((a, n) => a + n!, 0);
      // ~10 ms per line, and the frames are what the elapsed time is worth (minus the last tick at most)
      assert.ok(silence.length >= 70 && silence.length <= 101, `${silence.length} lines in ${elapsed.toFixed(0)} ms`);
      assert.ok(frames <= framesDue(elapsed, RATE) && frames >= framesDue(elapsed - 100, RATE), `${frames} frames in ${elapsed.toFixed(1)} ms`);
      const st = daemon.status().loops[0]!;
      assert.equal(st.state, 'waiting');
      assert.equal(st.clock?.running, true);
      assert.ok(st.clock!.frames >= frames && st.clock!.lines >= silence.length);
      assert.match(describeClock('audioloop0', 'read', RATE, st.clock!), /^audioloop0 clock \(clock=1\): running since .*, \d+ frames \(\d+\.\d{3} s\) of silence to the server in \d+ SILENCE lines$/);
      const ep = backend.endpoint('audioloop0')!;
      const cl = ep.connectClient({ appName: 'paplay', pid: 9 }).start();
      const pcm = counterPcm('s16le', 2, 4096);
      cl.play(pcm);
      await waitFor(() => split(c.bytes()).lines.some((l) => l.startsWith('START')), 3000, 'START');
      const tStart = performance.now();
      backend.clock.step(16);
      await waitFor(() => split(c.bytes()).pcm.length >= pcm.length, 3000, 'the PCM');
      const after = split(c.bytes());
      assert.equal(after.lines.at(-1), 'START app=paplay pid=9');
      const total = after.lines.slice(1, -1).reduce((a, l) => a + parseSilence(l)!, 0);
      // the clock's last tick at START: everything due until then was sent (tStart is when this test saw START: a poll later)
      assert.ok(total >= framesDue(tStart - t0 - 100, RATE) && total <= framesDue(tStart - t0, RATE), `${total} frames until START after ${(tStart - t0).toFixed(0)} ms`);
      assert.ok(after.pcm.equals(pcm), 'the client data, byte-exact, right after START');
      const st2 = daemon.status().loops[0]!;
      assert.equal(st2.clock?.running, false);
      assert.equal(st2.clock?.frames, total);
      await sleep(100);
      assert.equal(split(c.bytes()).pcm.length, pcm.length, 'nothing more (no SILENCE after START)');
    });

    it('default (clock=0): only OK while no client starts', async function () {
      const c = await raw('OPEN mode=read');
      await sleep(300);
      assert.deepEqual(split(c.bytes()).lines.map((l) => l.split(' ')[0]), ['OK']);
      assert.equal(daemon.status().loops[0]!.clock, null);
    });

    it('clock=2 is refused: ERR EINVAL 22', async function () {
      const c = await raw('OPEN mode=read clock=2');
      await waitFor(() => c.bytes().includes(0x0a), 3000, 'the reply');
      assert.match(c.bytes().toString(), /^ERR EINVAL 22 clock must be 0/);
    });

    it('library read(): silence at the loop\'s rate before a client (nothing waits), then the client data in order', async function () {
      const t0 = performance.now();
      const srv = await openServer(0, { mode: 'read', clock: true, socketDir: dir });
      open.push(srv);
      assert.equal(srv.clock, true);
      let got = 0;
      const first = await srv.read(4096);
      assert.ok(performance.now() - t0 < 500, 'the first read did not wait for a client');
      assert.ok(first.every((b) => b === 0), 'silence');
      got += first.length;
      while (performance.now() - t0 < 800) {
        const b = await srv.read(1 << 16);
        assert.ok(b.every((x) => x === 0));
        got += b.length;
      }
      const elapsed = performance.now() - t0;
      assert.ok(got / FRAME <= framesDue(elapsed, RATE) && got / FRAME >= framesDue(elapsed - 100, RATE), `${got / FRAME} frames in ${elapsed.toFixed(0)} ms`);
      assert.equal(srv.client, null);
      const ep = backend.endpoint('audioloop0')!;
      const cl = ep.connectClient({ appName: 'player', pid: 5 }).start();
      const pcm = counterPcm('s16le', 2, 4096);
      cl.play(pcm);
      await srv.waitForClient();
      backend.clock.step(16);
      // the rest of the silence (up to START), then the counter
      const parts: Buffer[] = [];
      let n = 0;
      while (n < srv.silenceFrames * FRAME - got + pcm.length) {
        const b = await srv.read(Math.min(1 << 16, srv.silenceFrames * FRAME - got + pcm.length - n));
        parts.push(b);
        n += b.length;
      }
      const rest = Buffer.concat(parts);
      const k = checkCounter(rest, 's16le', 2);
      assert.equal(k.lead * FRAME + got, srv.silenceFrames * FRAME, 'exactly the SILENCE frames, then the client');
      assert.equal(k.first, 0);
      assert.equal(k.frames, 4096);
      assert.equal(k.bad, 0);
      assert.deepEqual(srv.client, { app: 'player', pid: 5 });
    });

    it('library with clock and waitMs: silence flows, one read fails ETIMEDOUT per TIMEOUT, the next goes on', async function () {
      const srv = await openServer(0, { mode: 'read', clock: true, waitMs: 150, socketDir: dir });
      open.push(srv);
      const b = await srv.read(1920);
      assert.equal(b.length, 1920);
      await waitFor(() => srv.timeouts >= 1, 3000, 'a TIMEOUT');
      const e = (await srv.read(1920).catch((x: unknown) => x)) as CodedError;
      assert.equal(e.code, 'ETIMEDOUT');
      assert.equal(e.syscall, 'read');
      const c = await srv.read(1920);
      assert.ok(c.length > 0 && c.every((x) => x === 0), 'silence again');
      assert.ok(srv.silenceFrames > 0);
    });

    for (const clock of [true, false]) {
      it(`read after START, clock=${clock ? 1 : 0}: while every client is paused and in the grace period ${clock ? "the node's silence is kept, frame for frame of the graph" : 'nothing is read (the silence is not kept)'}; the client's data goes on in order`, async function () {
        await daemon.stop();
        backend = new MemoryBackend({ quantum: 256 });
        daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 2, dataPlane, clientGraceMs: 3000 }, socketDir: dir, connect: () => backend, handshakeTimeoutMs: 500 });
        await daemon.start();
        const srv = await openServer(0, { mode: 'read', clock, socketDir: dir });
        open.push(srv);
        const parts: Buffer[] = [];
        let total = 0;
        srv.readable.on('data', (b: Buffer) => {
          parts.push(b);
          total += b.length;
        });
        const ep = await waitFor(() => backend.endpoint('audioloop0'), 3000, 'the node');
        const cl = ep.connectClient({ appName: 'player' }).start();
        cl.play(counterPcm('s16le', 2, 2048));
        await srv.waitForClient();
        backend.clock.step(8);
        const pre = (): number => srv.silenceFrames * FRAME;
        await waitFor(() => total >= pre() + 2048 * FRAME, 3000, 'the first 2048 frames');
        // every client paused: the session goes on
        cl.stop();
        await waitFor(() => daemon.status().loops[0]!.session?.flowing === false, 3000, 'paused');
        backend.clock.step(10);
        if (clock) await waitFor(() => total >= pre() + (2048 + 2560) * FRAME, 3000, 'the silence of 10 cycles');
        else await sleep(100);
        assert.equal(total, pre() + (clock ? 2048 + 2560 : 2048) * FRAME, 'exactly what the node heard while paused');
        cl.start();
        cl.play(counterPcm('s16le', 2, 1024, 2048));
        await waitFor(() => daemon.status().loops[0]!.session?.flowing === true, 3000, 'resumed');
        backend.clock.step(4);
        await waitFor(() => total >= pre() + (clock ? 2048 + 2560 + 1024 : 3072) * FRAME, 3000, 'the next 1024 frames');
        // the client goes: the grace period (3 s) runs
        cl.disconnect();
        await waitFor(() => daemon.status().loops[0]!.session?.graceUntil, 3000, 'the grace period');
        backend.clock.step(10);
        if (clock) await waitFor(() => total >= pre() + (2048 + 2560 + 1024 + 2560) * FRAME, 3000, 'the silence of the grace period');
        else await sleep(100);
        const data = Buffer.concat(parts).subarray(pre());
        const k = checkCounterSkippingSilence(data, 's16le', 2);
        assert.deepEqual([k.first, k.frames, k.bad], [0, 3072, 0], JSON.stringify(k));
        assert.equal(k.silent, clock ? 5120 : 0, 'the paused and the grace cycles, as silence (clock=1 only)');
        assert.equal(data.length, (3072 + k.silent) * FRAME);
        if (clock) {
          // after the session's end nothing more comes, although the node would run on
          const end = new Promise<CodedError>((r) => srv.readable.once('error', r));
          assert.equal((await end).code, 'ECONNRESET');
          assert.equal(total, pre() + (3072 + 5120) * FRAME);
        }
      });
    }

    it('write: the server\'s data is consumed at the loop\'s rate before a client (the writer is not held); a client then gets the rest in order, without loss', async function () {
      const c = await raw('OPEN mode=write clock=1', 1);
      await waitFor(() => c.bytes().includes(0x0a), 3000, 'OK');
      // a writer 200 ms ahead of real time, writing on in real time (10 ms chunks)
      const t0 = performance.now();
      let written = 0;
      let blocked = 0;
      const writeUntil = async (ms: number): Promise<void> => {
        while (performance.now() - t0 < ms) {
          const due = framesDue(performance.now() - t0 + 200, RATE);
          if (due > written) {
            if (!c.sock.write(counterPcm('s16le', 2, due - written, written))) blocked++;
            written = due;
          }
          await sleep(10);
        }
      };
      await writeUntil(1000);
      const st = daemon.status().loops[1]!;
      const elapsed = performance.now() - t0;
      assert.equal(st.state, 'waiting');
      const consumed = st.clock!.consumedBytes;
      assert.equal(consumed % FRAME, 0, 'whole frames');
      assert.ok(consumed / FRAME >= framesDue(elapsed - 100, RATE) && consumed / FRAME <= framesDue(elapsed + 60, RATE), `${consumed / FRAME} frames consumed in ${elapsed.toFixed(0)} ms`);
      assert.equal(blocked, 0, 'the socket never pushed back on a writer at real time');
      assert.match(describeClock('audioloop1', 'write', RATE, st.clock!), /bytes of the server's data consumed$/);
      // a client starts: what the clock did not consume plays, from exactly there on
      const ep = backend.endpoint('audioloop1')!;
      const rec = ep.connectClient({ appName: 'recorder' }).start();
      await waitFor(() => c.bytes().toString('latin1').includes('START'), 3000, 'START');
      const atStart = daemon.status().loops[1]!.clock!;
      assert.equal(atStart.running, false);
      const gone = atStart.consumedBytes / FRAME;
      const more = 4096;
      c.sock.write(counterPcm('s16le', 2, more, written));
      written += more;
      const deadline = Date.now() + 5000;
      while (rec.recorded().length < (written - gone) * FRAME) {
        assert.ok(Date.now() < deadline, `recorded ${rec.recorded().length / FRAME} of ${written - gone} frames`);
        backend.clock.step();
        await sleep(1);
      }
      const k = checkCounter(rec.recorded(), 's16le', 2);
      assert.equal(k.first, gone % 30000, `the first frame a client hears is the first the clock did not consume (${gone})`);
      assert.ok(k.frames >= written - gone, `every frame after that, in order: ${JSON.stringify(k)}`);
      assert.equal(daemon.status().loops[1]!.clock!.consumedBytes, atStart.consumedBytes, 'nothing consumed after START');
    });

    it('write: a server that finishes (EOF) before any client: the clock consumes the rest in real time, then the loop closes', async function () {
      const c = await raw('OPEN mode=write clock=1', 1);
      await waitFor(() => c.bytes().includes(0x0a), 3000, 'OK');
      const t0 = performance.now();
      const frames = 24000; // 0.5 s
      c.sock.end(counterPcm('s16le', 2, frames));
      await waitFor(() => daemon.status().loops[1]!.state === 'idle', 5000, 'the loop closed');
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 480, `closed after ${elapsed.toFixed(0)} ms: the clock took 0.5 s of data`);
      assert.ok(elapsed < 1500, `closed after ${elapsed.toFixed(0)} ms`);
      await waitFor(() => c.sock.readableEnded || c.sock.destroyed, 3000, 'the daemon closed the connection');
    });

    it('library write(): resolves before any client (the clock consumes it); clock=0 still waits', async function () {
      const srv = await openServer(1, { mode: 'write', clock: true, socketDir: dir });
      open.push(srv);
      const t0 = performance.now();
      await srv.write(counterPcm('s16le', 2, 4800)); // 100 ms
      assert.ok(performance.now() - t0 < 200, 'not held for a client');
      await srv.write(counterPcm('s16le', 2, 4800, 4800));
      await waitFor(() => (daemon.status().loops[1]!.clock?.consumedBytes ?? 0) > 0, 3000, 'consumed');
      const w = srv.writable;
      await new Promise<void>((r, j) => w.write(Buffer.alloc(1920), (e) => (e ? j(e) : r())));
      await srv.close();

      const plain = await openServer(1, { mode: 'write', socketDir: dir });
      open.push(plain);
      let done = false;
      void plain.write(Buffer.alloc(1920)).then(() => (done = true));
      await sleep(300);
      assert.equal(done, false, 'clock=0: the write waits for a client');
    });
  });
}
