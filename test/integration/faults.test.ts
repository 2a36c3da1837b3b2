/**
 * Faults mid-stream, against the real headless PipeWire and real clients:
 * the server app, the client app, the daemon (SIGTERM and SIGKILL) and the
 * sound server itself die while audio flows. Every process is tracked by
 * PID; the daemon runs as a child process so that it can be killed.
 *
 * On scripts/test.sh's PulseAudio pass the same faults hit a real
 * PulseAudio (the daemon's `--sound-server system` picks the PulseAudio
 * backend there): PulseAudio restarts, and a SIGKILLed daemon leaves its
 * modules (and a client stream on them) to the next daemon, which kills
 * the stream and unloads them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer, type LoopServer } from '../../src/client';
import { fetchStatus } from '../../src/cli/main';
import type { DaemonStatus } from '../../src/daemon';
import { controlSocketPath, loopSocketPath } from '../../src/protocol';
import { onPulseAudio, requireSoundServer, soundServerTitle, SOUNDSERVER_SCRIPT } from '../helpers/soundserver';
import { run, spawnTracked, stopTracked, waitFor, type Tracked } from '../helpers/proc';
import { checkCounterSkippingSilence, counterPcm } from '../helpers/pcm';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const RATE = 48000;
const CH = 2;
const FRAME = 4; // s16le stereo

type Env = NodeJS.ProcessEnv;

async function startDaemon(sockDir: string, instances: number, env: Env = process.env): Promise<Tracked> {
  const d = spawnTracked(process.execPath, [CLI, 'daemon', '-n', String(instances), '-s', sockDir, '--sound-server', 'system', '--log-level', 'debug'], { env });
  await waitFor(async () => {
    if (d.child.exitCode !== null) throw new Error(`daemon exited: ${d.stderr()}`);
    try {
      return await fetchStatus(sockDir);
    } catch {
      return null;
    }
  }, 10000, 'the daemon to answer STATUS');
  return d;
}

async function status(sockDir: string): Promise<DaemonStatus> {
  return fetchStatus(sockDir);
}

/** waits until loop 0 has moved more than `bytes`; returns how many it had */
async function flowed(dir: string, bytes: number): Promise<number> {
  return waitFor(async () => {
    const b = (await status(dir)).loops[0]!.bytes;
    return b > bytes ? b : 0;
  }, 10000, `${bytes} bytes to flow through loop 0`);
}

/** node names of our loops on the sound server, sinks and sources */
async function loopNodes(env: Env = process.env): Promise<string[]> {
  const names: string[] = [];
  for (const kind of ['sinks', 'sources']) {
    const r = await run('pactl', ['list', 'short', kind], { env });
    assert.equal(r.code, 0, r.stderr);
    for (const line of r.stdout.split('\n')) {
      const name = line.split('\t')[1];
      if (name && /^audioloop\d+$/.test(name)) names.push(name);
    }
  }
  return names;
}

/** sink-inputs as [id, sink id, app-ish] rows: a moved client stream would show up here */
async function sinkInputs(env: Env = process.env): Promise<string[]> {
  const r = await run('pactl', ['list', 'short', 'sink-inputs'], { env });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

function paplayCounter(file: string, node: string, env: Env = process.env): Tracked {
  return spawnTracked('paplay', ['--raw', '--format=s16le', `--rate=${RATE}`, `--channels=${CH}`, '-d', node, file], { env });
}

/** Reads a server's stream to its end; resolves with the bytes and the error that ended it. */
function collect(srv: LoopServer): Promise<{ data: Buffer; err: (Error & { code?: string }) | null }> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    srv.readable.on('data', (c: Buffer) => chunks.push(c));
    srv.readable.once('error', (err) => resolve({ data: Buffer.concat(chunks), err }));
    srv.readable.once('end', () => resolve({ data: Buffer.concat(chunks), err: null }));
  });
}

/** paplay plays half a second of counter into `node`; `srv` must read all of it, then ECONNRESET; closes `srv`. */
async function playsExactly(srv: LoopServer, node: string, env: Env, what: string): Promise<void> {
  const got = collect(srv);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-short-')), 'short.raw');
  fs.writeFileSync(file, counterPcm('s16le', CH, RATE / 2));
  const p = await paplayCounter(file, node, env).done;
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  assert.equal(p.code, 0, p.stderr);
  const r = await got;
  await srv.close();
  assert.equal(r.err?.code, 'ECONNRESET');
  const c = checkCounterSkippingSilence(r.data, 's16le', CH);
  assert.equal(c.first, 0);
  assert.equal(c.frames, RATE / 2, what);
  assert.equal(c.bad, 0);
}

describe(`faults mid-stream (real headless ${soundServerTitle()})`, function () {
  this.timeout(60000);
  let tmp: string;
  let counterFile: string;

  before(requireSoundServer);
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-faults-'));
    counterFile = path.join(tmp, 'counter.raw');
    fs.writeFileSync(counterFile, counterPcm('s16le', CH, RATE * 20)); // 20 s: always still playing when the fault hits
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  let n = 0;
  function sockDir(): string {
    return path.join(tmp, `sock${n++}`);
  }

  /** a daemon with one loop, a reading server, and paplay playing the long counter into it */
  async function streaming() {
    const dir = sockDir();
    const daemon = await startDaemon(dir, 1);
    const srv = await openServer(0, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    const got = collect(srv);
    const play = paplayCounter(counterFile, 'audioloop0');
    return { dir, daemon, srv, got, play };
  }

  it('SIGKILL of the server app: the client stream is ended (not moved), the node goes, the loop opens again', async function () {
    const dir = sockDir();
    await startDaemon(dir, 1);
    const rec = spawnTracked(process.execPath, [CLI, 'record', '0', path.join(tmp, 'k.wav'), '-s', dir, '-q']);
    await waitFor(async () => (await loopNodes()).includes('audioloop0'), 10000, 'audioloop0 to appear');
    const play = paplayCounter(counterFile, 'audioloop0');
    await flowed(dir, RATE * FRAME / 2);

    process.kill(rec.pid, 'SIGKILL');
    const ended = await Promise.race([play.done, new Promise<null>((r) => setTimeout(() => r(null), 8000))]);
    assert.ok(ended, 'paplay must end when the server end dies, not play on elsewhere');
    assert.notEqual(ended.code, 0, `paplay should fail, it exited ${ended.code}: ${ended.stderr}`);
    assert.deepEqual(await sinkInputs(), [], 'no client stream may be left (moved to another sink)');
    // the client streams are ended before the node is removed, so paplay may
    // exit a moment before the node goes: wait for it (bounded), as below
    await waitFor(async () => (await loopNodes()).length === 0, 5000, 'no stale audioloop node');
    assert.equal((await status(dir)).loops[0]!.state, 'idle');

    // the loop is usable again by a new server
    const srv = await openServer(0, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    try {
      assert.deepEqual(await loopNodes(), ['audioloop0']);
    } finally {
      await srv.close();
    }
  });

  it('SIGKILL of the client app: the server gets every captured frame, then ECONNRESET', async function () {
    const { dir, daemon: d, srv, got, play } = await streaming();
    const before = await flowed(dir, RATE * FRAME);
    process.kill(play.pid, 'SIGKILL');
    const { data, err } = await got;
    await srv.close();
    assert.equal(err?.code, 'ECONNRESET', `expected ECONNRESET, got ${String(err)}`);
    const chk = checkCounterSkippingSilence(data, 's16le', CH);
    assert.equal(chk.first, 0, 'starts at the first frame paplay sent');
    assert.equal(chk.bad, 0, `only the counter, in order, and silence: ${JSON.stringify(chk)}`);
    assert.ok(data.length >= before, `everything the daemon had sent before the kill arrived (${data.length} < ${before})\n${d.stderr().slice(-2000)}`);
    await waitFor(async () => (await loopNodes()).length === 0, 5000, 'the node to go');
    assert.equal((await status(dir)).loops[0]!.state, 'idle');
  });

  it('SIGTERM of the daemon: the server gets its data then ECONNRESET, clients end unmoved, nodes and sockets go', async function () {
    const dir = sockDir();
    const daemon = await startDaemon(dir, 2);
    const srv = await openServer(0, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    const waiting = await openServer(1, { mode: 'write', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    const waitingErr = waiting.waitForClient().then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    const got = collect(srv);
    const play = paplayCounter(counterFile, 'audioloop0');
    const before = await flowed(dir, (RATE * FRAME) / 2);

    process.kill(daemon.pid, 'SIGTERM');
    const fin = await daemon.done;
    assert.equal(fin.code, 0, `the daemon exits 0 on SIGTERM: ${fin.stderr.slice(-500)}`);
    const { data, err } = await got;
    assert.equal(err?.code, 'ECONNRESET');
    const chk = checkCounterSkippingSilence(data, 's16le', CH);
    assert.equal(chk.bad, 0, JSON.stringify(chk));
    assert.ok(data.length >= before, `${data.length} < ${before}`);
    assert.equal((await waitingErr)?.code, 'ECONNRESET', 'a waiting writer is told too');
    await srv.close();
    await waiting.close();

    const ended = await Promise.race([play.done, new Promise<null>((r) => setTimeout(() => r(null), 8000))]);
    assert.ok(ended, 'paplay ended');
    assert.notEqual(ended.code, 0);
    assert.deepEqual(await sinkInputs(), [], 'no client stream moved to another sink');
    assert.deepEqual(await loopNodes(), []);
    assert.ok(!fs.existsSync(loopSocketPath(dir, 0)) && !fs.existsSync(controlSocketPath(dir)), 'sockets removed');
  });

  it('SIGKILL of the daemon: ECONNRESET for the server, no stale node, a new daemon takes over the stale sockets', async function () {
    const { dir, daemon, srv, got, play } = await streaming();
    await flowed(dir, RATE * FRAME / 2);
    process.kill(daemon.pid, 'SIGKILL');
    const { data, err } = await got;
    await srv.close();
    assert.equal(err?.code, 'ECONNRESET');
    assert.equal(checkCounterSkippingSilence(data, 's16le', CH).bad, 0);
    if (onPulseAudio()) {
      // PulseAudio keeps a dead client's modules: the node stays, and paplay plays on into it (not moved)
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await loopNodes(), ['audioloop0'], 'the stale null sink stays');
      assert.equal(play.child.exitCode, null, 'paplay still plays into it');
      assert.equal((await sinkInputs()).length, 1);
      assert.ok(fs.existsSync(loopSocketPath(dir, 0)), 'a killed daemon leaves its socket');
      // the next daemon ends the stale stream (not rescued to the speakers) and unloads the modules
      await startDaemon(dir, 1);
      const fin = await Promise.race([play.done, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
      assert.ok(fin, 'paplay was ended by the new daemon');
      assert.notEqual(fin.code, 0, fin.stderr);
      assert.deepEqual(await sinkInputs(), [], 'no client stream moved to another sink');
      assert.deepEqual(await loopNodes(), [], 'the stale node is gone');
    } else {
      // PipeWire removes a dead client's nodes itself. (A killed daemon cannot end
      // the client streams first: the session manager may move them elsewhere.)
      await waitFor(async () => (await loopNodes()).length === 0, 5000, 'PipeWire to remove the dead daemon\'s node');
      stopTracked(play.pid);
      await play.done;

      assert.ok(fs.existsSync(loopSocketPath(dir, 0)), 'a killed daemon leaves its socket');
      await startDaemon(dir, 1);
    }
    const again = await openServer(0, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    await playsExactly(again, 'audioloop0', process.env, 'the new daemon carries every frame');
  });

  describe('the sound server dies and comes back', function () {
    let rt: string;
    let env: Env;

    before(function () {
      rt = fs.mkdtempSync(path.join(os.tmpdir(), onPulseAudio() ? 'audioloop-faults-pa-' : 'audioloop-faults-pw-'));
    });
    after(function () {
      if (!rt) return;
      try {
        execFileSync('bash', [SOUNDSERVER_SCRIPT, 'stop', rt], { stdio: 'ignore', timeout: 30000 });
      } finally {
        fs.rmSync(rt, { recursive: true, force: true });
      }
    });

    function startSoundServer(): Env {
      const out = execFileSync('bash', [SOUNDSERVER_SCRIPT, onPulseAudio() ? 'start-pulse' : 'start', rt], { encoding: 'utf8', timeout: 60000 });
      const e: Env = { ...process.env };
      delete e.PIPEWIRE_REMOTE;
      for (const m of out.matchAll(/^export ([A-Z_]+)='(.*)'$/gm)) e[m[1]!] = m[2]!;
      return e;
    }

    it('a running reader gets its data and ECONNRESET, a waiting one keeps waiting and its node is recreated', async function () {
      env = startSoundServer();
      const dir = sockDir();
      await startDaemon(dir, 2, env);
      const running = await openServer(0, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
      const waiting = await openServer(1, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
      const got = collect(running);
      const play = paplayCounter(counterFile, 'audioloop0', env);
      const before = await flowed(dir, (RATE * FRAME) / 2);

      execFileSync('bash', [SOUNDSERVER_SCRIPT, 'stop', rt], { stdio: 'ignore', timeout: 30000 });
      const { data, err } = await got;
      await running.close();
      assert.equal(err?.code, 'ECONNRESET');
      const chk = checkCounterSkippingSilence(data, 's16le', CH);
      assert.equal(chk.first, 0);
      assert.equal(chk.bad, 0, `what arrived before the fault is the counter in order (and silence): ${JSON.stringify(chk)}`);
      assert.ok(data.length >= before, `${data.length} < ${before}`);
      await play.done;
      await waitFor(async () => !(await status(dir)).soundServer.connected, 5000, 'the daemon to notice');
      const st = await status(dir);
      assert.equal(st.loops[0]!.state, 'idle');
      assert.equal(st.loops[1]!.state, 'waiting', 'the waiting server keeps its end');
      assert.equal(st.loops[1]!.nodeId, -1, 'and has no node while the sound server is away');

      env = startSoundServer();
      await waitFor(async () => (await status(dir)).soundServer.connected, 10000, 'the daemon to reconnect');
      await waitFor(async () => (await loopNodes(env)).includes('audioloop1'), 10000, 'audioloop1 to be recreated');
      assert.deepEqual(await loopNodes(env), ['audioloop1'], 'only the waiting server\'s node comes back');
      assert.equal(waiting.error, null, 'the waiting server was not reset');

      await playsExactly(waiting, 'audioloop1', env, 'every frame through the recreated node');
    });
  });
});
