/**
 * Issue 13: OPEN wait=MS end to end. A real daemon (in-process, or the CLI
 * as a tracked process) over the real headless PipeWire, real clients
 * (pw-play, paplay, pw-record) and real ALSA programs (arecord, aplay with
 * the freshly built plugin). The bound is measured from before the open.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Daemon } from '../../src/daemon';
import { PipeWireBackend } from '../../src/backend/pipewire';
import { openServer, type LoopServer } from '../../src/client';
import { fetchStatus } from '../../src/control';
import type { PcmFormat } from '../../src/format';
import { requireSoundServer } from '../helpers/soundserver';
import { finished, run, sleep, spawnTracked, waitFor } from '../helpers/proc';
import { analyzeTone, assertTone as assertToneOf } from '../helpers/tone';
import { useDaemonFixture } from '../helpers/daemon-fixture';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const PLUGIN = path.join(ROOT, 'build', 'alsa', 'libasound_module_pcm_audioloop.so');
const CONF = path.join(ROOT, 'alsa', '60-audioloop.conf');
const S16: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };

type CodedError = Error & { code?: string; errno?: number; syscall?: string };


/**
 * Reads from srv until `bytes` arrived (or the stream ends). With wait=, a
 * read that times out before the client started is retried (the next read
 * waits again: a real client can take longer than one bound to start).
 */
async function readBytes(srv: LoopServer, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  while (n < bytes) {
    let b: Buffer;
    try {
      b = await srv.read(Math.min(1 << 16, bytes - n));
    } catch (e) {
      if ((e as CodedError).code === 'ETIMEDOUT' && !srv.client) continue;
      if ((e as CodedError).code === 'ECONNRESET') break;
      throw e;
    }
    parts.push(b);
    n += b.length;
  }
  return Buffer.concat(parts);
}

describe('OPEN wait=MS (issue 13): real daemon, real PipeWire, real clients', function () {
  this.timeout(60000);
  const fx = useDaemonFixture({ prefix: 'audioloop-wait-', socketName: 'audioloop' });
  const servers = fx.servers;
  const logLines = fx.logLines;
  let tmp: string;
  let dir: string;
  let tone: string;

  before(requireSoundServer);
  beforeEach(function () {
    ({ tmp, dir } = fx);
    tone = path.join(tmp, 'tone440.wav');
    execFileSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', tone, 'synth', '1', 'sine', '440', 'vol', '0.5']);
  });

  function startDaemon(): Promise<Daemon> {
    return fx.start({ audioloopInstances: 2, bufferMs: 1000 }, () => new PipeWireBackend({ appName: 'audioloop-test-daemon' }));
  }

  function assertTone(pcm: Buffer, what: string): void {
    assertToneOf(pcm, S16, 440, 0.9, what);
  }

  it('read: ETIMEDOUT after the bound with no client (elapsed >= bound), then pw-play starts and its tone flows on the same connection', async function () {
    await startDaemon();
    const t0 = performance.now();
    const srv = await openServer(0, { mode: 'read', ...S16, waitMs: 500, socketDir: dir, app: 'wait-test' });
    servers.push(srv);
    const e = (await srv.read(4096).catch((x: unknown) => x)) as CodedError;
    const elapsed = performance.now() - t0;
    assert.equal(e.code, 'ETIMEDOUT', String(e));
    assert.equal(e.errno, os.constants.errno.ETIMEDOUT);
    assert.equal(e.syscall, 'read');
    assert.ok(elapsed >= 500 && elapsed < 1500, `ETIMEDOUT after ${elapsed.toFixed(0)} ms (bound 500)`);
    process.stderr.write(`      [measured] read ETIMEDOUT after ${elapsed.toFixed(1)} ms for wait=500\n`);
    const st = await fetchStatus(dir);
    assert.equal(st.loops[0]!.state, 'waiting', 'the server end stays open');
    assert.equal(st.loops[0]!.server?.waitMs, 500);
    // the next read waits again; a real client starts within the next bound
    const reading = readBytes(srv, 48000 * 4 * 2);
    const play = spawnTracked('pw-play', ['--target', 'audioloop0', tone]);
    const got = await reading;
    assert.equal((await finished(play, 20000, 'pw-play')).code, 0);
    assert.equal(srv.client?.app !== undefined, true, 'START named the client');
    assertTone(got, 'after the timeout');
  });

  it('default (no wait=): no error after 2x the bound above; paplay then plays into the same connection', async function () {
    await startDaemon();
    const srv = await openServer(0, { mode: 'read', ...S16, socketDir: dir, app: 'wait-test' });
    servers.push(srv);
    let outcome = 'pending';
    const reading = readBytes(srv, 48000 * 4).then(
      (b) => {
        outcome = 'data';
        return b;
      },
      (e: Error) => {
        outcome = `error ${String(e)}`;
        return Buffer.alloc(0);
      },
    );
    await sleep(1000);
    assert.equal(outcome, 'pending', 'without wait= the read waits (2x a 500 ms bound)');
    assert.equal(srv.timeouts, 0);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=100', tone]);
    const got = await reading;
    assert.equal((await finished(play, 20000, 'paplay')).code, 0);
    assert.equal(outcome, 'data');
    const t = analyzeTone(got, S16);
    assert.ok(Math.abs(t.freq - 440) < 440 * 0.005, JSON.stringify(t));
  });

  it('write: ETIMEDOUT after the bound, then pw-record starts and records the tone written on the same connection', async function () {
    await startDaemon();
    const t0 = performance.now();
    const srv = await openServer(1, { mode: 'write', ...S16, waitMs: 400, socketDir: dir, app: 'wait-test' });
    servers.push(srv);
    const pcm = fs.readFileSync(tone).subarray(44);
    const e = (await srv.write(pcm).catch((x: unknown) => x)) as CodedError;
    const elapsed = performance.now() - t0;
    assert.equal(e.code, 'ETIMEDOUT', String(e));
    assert.equal(e.syscall, 'write');
    assert.ok(elapsed >= 400 && elapsed < 1400, `ETIMEDOUT after ${elapsed.toFixed(0)} ms (bound 400)`);
    process.stderr.write(`      [measured] write ETIMEDOUT after ${elapsed.toFixed(1)} ms for wait=400\n`);
    const out = path.join(tmp, 'rec.raw');
    const rec = spawnTracked('pw-record', ['--target', 'audioloop1', '--format', 's16', '--rate', '48000', '--channels', '2', out]);
    // the next write waits again (once more if pw-record takes longer than a bound to start)
    for (;;) {
      const w = await srv.write(pcm).then(
        () => null,
        (x: CodedError) => x,
      );
      if (!w) break;
      assert.equal(w.code, 'ETIMEDOUT', String(w));
      assert.equal(srv.client, null);
    }
    await srv.close();
    const r = await finished(rec, 20000, 'pw-record');
    assert.notEqual(r.code, null);
    assertTone(fs.readFileSync(out), 'pw-record after the timeout');
  });

  it('CLI: record --wait 0.3 and play --wait 0.3 exit 6 naming ETIMEDOUT after >= 0.3 s; --help documents --wait', async function () {
    await startDaemon();
    for (const [cmd, file] of [
      ['record', path.join(tmp, 'out.wav')],
      ['play', tone],
    ] as const) {
      const t0 = performance.now();
      const r = await run(process.execPath, [CLI, cmd, cmd === 'record' ? '0' : '1', file, '--wait', '0.3', '-s', dir], { timeoutMs: 15000 });
      const elapsed = performance.now() - t0;
      assert.equal(r.code, 6, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, /ETIMEDOUT/, cmd);
      assert.match(r.stderr, /no client started within 300 ms/, cmd);
      assert.ok(elapsed >= 300, `${cmd} exited after ${elapsed.toFixed(0)} ms`);
      const h = await run(process.execPath, [CLI, cmd, '--help']);
      assert.match(h.stdout, /--wait SEC/);
      const bad = await run(process.execPath, [CLI, cmd, '0', file, '--wait', '0', '-s', dir]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /--wait must be a number of seconds/);
    }
    const b = await run(process.execPath, [CLI, 'bridge', '0', '--send', 'rtp://127.0.0.1:45999', '--wait', '0.3', '-s', dir], { timeoutMs: 15000 });
    assert.equal(b.code, 6, b.stderr);
    assert.match(b.stderr, /ETIMEDOUT/);
    assert.match((await run(process.execPath, [CLI, 'bridge', '--help'])).stdout, /--wait SEC/);
    await waitFor(async () => (await fetchStatus(dir)).loops.every((l) => l.state === 'idle'), 5000, 'the loops closed');
  });

  it('ALSA: arecord/aplay -D audioloop:LOOP=N,WAIT=300 fail with -ETIMEDOUT ("Connection timed out") after >= 0.3 s', async function () {
    assert.ok(fs.existsSync(PLUGIN), `${PLUGIN} is built (make -C alsa)`);
    await startDaemon();
    const conf = path.join(tmp, 'asound.conf');
    fs.writeFileSync(conf, `pcm_type.audioloop { lib "${PLUGIN}" }\n` + fs.readFileSync(CONF, 'utf8'));
    const env = { ...process.env, ALSA_CONFIG_PATH: conf, XDG_RUNTIME_DIR: tmp };
    for (const [cmd, args] of [
      ['arecord', ['-D', 'audioloop:LOOP=0,WAIT=300', '-f', 'S16_LE', '-r', '48000', '-c', '2', path.join(tmp, 'a.wav')]],
      ['aplay', ['-D', 'audioloop:LOOP=1,WAIT=300', tone]],
    ] as const) {
      const t0 = performance.now();
      const p = spawnTracked(cmd, [...args], { env });
      const r = await finished(p, 10000, cmd);
      const elapsed = performance.now() - t0;
      // the daemon's log of the open (status could miss it: the program may be gone before a poll)
      const opened = logLines.find((l) => l.includes(`server ${cmd} pid ${p.pid} opened`));
      assert.ok(opened && / wait=300\)/.test(opened), `${cmd} opened with wait=300: ${opened}`);
      assert.equal(r.code, 1, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, /Connection timed out/, cmd);
      assert.ok(elapsed >= 300, `${cmd} after ${elapsed.toFixed(0)} ms`);
    }
    // a bad argument is refused at open
    const bad = await run('arecord', ['-D', 'audioloop:LOOP=0,WAIT=-1', '-d', '1', '/dev/null'], { env });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /wait must be 0 \(forever\) or 1-86400000 ms/);
  });
});
