/**
 * OK comes once the node is registered on the sound server: a client
 * started the moment OK arrives finds audioloopN (and is not ended by the
 * server-first rule, "no audioloop server on audioloopN"). Before, OK went
 * out right after the node was asked for, and the bench's 16-loop CPU phase
 * (a player started on each OK) hung on a refused player.
 *
 * Real daemon (in-process), real sound server, real clients; both data
 * planes. On the PulseAudio pass (scripts/test.sh) the node is a null sink
 * or a remap source, listed by pactl, and the player is paplay.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openServer } from '../../src/client';
import { fetchStatus } from '../../src/control';
import { DATA_PLANES, type DataPlane } from '../../src/loop';
import type { AudioloopError } from '../../src/errors';
import { useDaemonFixture } from '../helpers/daemon-fixture';
import { onPulseAudio, requireSoundServer, soundServerTitle, suiteBackend } from '../helpers/soundserver';
import { run, spawnTracked, waitFor, type Finished } from '../helpers/proc';
import { checkCounterSkippingSilence, counterPcm } from '../helpers/pcm';

/** The node names the sound server lists now: `pw-cli ls Node` on PipeWire, pactl's sinks and sources on PulseAudio. */
async function listedNodes(): Promise<{ names: Set<string>; raw: string }> {
  if (onPulseAudio()) {
    const sinks = await run('pactl', ['list', 'short', 'sinks']);
    const sources = await run('pactl', ['list', 'short', 'sources']);
    assert.equal(sinks.code, 0, sinks.stderr);
    assert.equal(sources.code, 0, sources.stderr);
    const raw = sinks.stdout + sources.stdout;
    return { names: new Set(raw.split('\n').map((l) => l.split('\t')[1] ?? '').filter(Boolean)), raw };
  }
  const r = await run('pw-cli', ['ls', 'Node']);
  assert.equal(r.code, 0, `pw-cli ls Node: ${r.stderr}`);
  const names = new Set<string>();
  for (const m of r.stdout.matchAll(/node\.name = "([^"]*)"/g)) names.add(m[1]!);
  return { names, raw: r.stdout };
}

const FRAMES = 24000; // 0.5 s at 48 kHz

describe(`OK only after the node is registered: real daemon, real ${soundServerTitle()}`, function () {
  this.timeout(90000);
  const fx = useDaemonFixture({
    prefix: 'audioloop-okreg-',
    socketName: 'sock',
    logTail: 200,
    afterStop: () => waitFor(async () => ![...(await listedNodes()).names].some((n) => /^audioloop\d+$/.test(n)), 5000, 'no audioloop node left').then(() => undefined),
  });
  const servers = fx.servers;
  const logLines = fx.logLines;
  let dir = '';

  before(requireSoundServer);
  beforeEach(function () {
    dir = fx.dir;
  });

  async function startDaemon(instances: number, dataPlane: DataPlane): Promise<void> {
    await fx.start({ audioloopInstances: instances, bufferMs: 1000, dataPlane }, () => suiteBackend('audioloop-test-okreg'));
  }

  for (const plane of DATA_PLANES) {
    it(`${plane} data plane: right after each of ten OKs (read and write) the sound server lists audioloop0`, async function () {
      await startDaemon(1, plane);
      for (let i = 0; i < 10; i++) {
        const mode = i % 2 === 0 ? 'read' : 'write';
        // the previous node is gone: it cannot stand in for the new one
        await waitFor(async () => !(await listedNodes()).names.has('audioloop0'), 5000, `audioloop0 to go before open ${i + 1}`);
        const srv = await openServer(0, { mode, socketDir: dir, app: 'okreg-test' });
        servers.push(srv);
        // one look, no waiting: the node must be there when OK arrives
        const now = await listedNodes();
        assert.ok(now.names.has('audioloop0'), `open ${i + 1} (${mode}): audioloop0 not listed right after OK:\n${now.raw}`);
        const st = (await fetchStatus(dir)).loops[0]!;
        assert.ok(st.nodeId >= 0, `open ${i + 1}: status nodeId ${st.nodeId}`);
        assert.equal(st.state, 'waiting');
        await srv.close();
        servers.splice(servers.indexOf(srv), 1);
        await waitFor(async () => (await fetchStatus(dir)).loops[0]?.state === 'idle', 5000, `loop idle after open ${i + 1}`);
      }
      assert.ok(logLines.some((l) => /OK to the server \(node \d+ registered after \d+ ms\)/.test(l)), 'OK went out on the registration');
      assert.ok(!logLines.some((l) => /sending OK anyway/.test(l)), 'never past the bound');
    });

    it(`${plane} data plane: 4 loops opened at once, a ${onPulseAudio() ? 'paplay' : 'pw-play'} started on each OK: every one accepted, every one delivers its data`, async function () {
      const K = 4;
      await startDaemon(K, plane);
      const file = path.join(fx.tmp, 'counter.raw');
      fs.writeFileSync(file, counterPcm('s16le', 2, FRAMES));
      const players: Promise<Finished>[] = [];
      const got: Buffer[][] = Array.from({ length: K }, () => []);
      const ends: Promise<AudioloopError | null>[] = [];
      const fds: number[] = [];
      try {
        await Promise.all(
          Array.from({ length: K }, async (_, i) => {
            const srv = await openServer(i, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: dir, app: `okreg-${i}` });
            servers.push(srv);
            // the player starts the moment OK is here
            let p;
            if (onPulseAudio()) {
              p = spawnTracked('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', srv.node, file]);
            } else {
              const fd = fs.openSync(file, 'r');
              fds.push(fd);
              p = spawnTracked('pw-play', ['--target', srv.node, '--format', 's16', '--rate', '48000', '--channels', '2', '-'], { stdio: [fd, 'pipe', 'pipe'] });
            }
            players[i] = p.done;
            srv.readable.on('data', (c: Buffer) => got[i]!.push(c));
            ends[i] = new Promise((resolve) => {
              srv.readable.once('error', (e: AudioloopError) => resolve(e));
              srv.readable.once('end', () => resolve(null));
            });
          }),
        );
        const done = await Promise.all(players);
        for (let i = 0; i < K; i++) {
          const p = done[i]!;
          assert.doesNotMatch(p.stderr, /no audioloop server/, `player ${i} refused: ${p.stderr}`);
          assert.equal(p.code, 0, `player ${i} into audioloop${i} exits 0 (accepted); stderr: ${p.stderr}`);
        }
        // each session ends after the player left (ECONNRESET after the data)
        const errs = await Promise.all(ends.map((e) => Promise.race([e, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15000))])));
        for (let i = 0; i < K; i++) {
          const e = errs[i];
          assert.notEqual(e, 'hung', `audioloop${i}: the session did not end`);
          assert.equal((e as AudioloopError | null)?.code, 'ECONNRESET', `audioloop${i}: ended with ${String(e)}`);
          const c = checkCounterSkippingSilence(Buffer.concat(got[i]!), 's16le', 2);
          assert.equal(c.bad, 0, `audioloop${i}: ${JSON.stringify(c)}`);
          assert.equal(c.first, 0, `audioloop${i}: the counter from its first frame: ${JSON.stringify(c)}`);
          assert.ok(c.frames >= FRAMES * 0.9, `audioloop${i}: ${c.frames} of ${FRAMES} frames arrived: ${JSON.stringify(c)}`);
        }
      } finally {
        for (const fd of fds) fs.closeSync(fd);
      }
    });
  }
});
