/**
 * close() then open() at once, as a program reopening a device does: the
 * new open waits for the old loop to finish closing instead of EBUSY.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer } from '../../src/client';
import { Daemon } from '../../src/daemon';
import { PipeWireBackend } from '../../src/backend/pipewire';
import { DEFAULT_CONFIG } from '../../src/config';
import { requireSoundServer } from '../helpers/soundserver';
import { spawnTracked, waitFor } from '../helpers/proc';
import { counterPcm } from '../helpers/pcm';

describe('reopen right after close (real PipeWire)', function () {
  this.timeout(30000);
  let tmp: string;
  let daemon: Daemon;

  before(requireSoundServer);
  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-reopen-'));
    daemon = new Daemon({ config: { ...DEFAULT_CONFIG, audioloopInstances: 1 }, socketDir: path.join(tmp, 'sock'), connect: () => new PipeWireBackend() });
    await daemon.start();
  });
  after(async function () {
    await daemon?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('a reader closed while paplay plays can be reopened at once, five times in a row', async function () {
    const file = path.join(tmp, 'c.raw');
    fs.writeFileSync(file, counterPcm('s16le', 2, 48000 * 10));
    for (let round = 0; round < 5; round++) {
      const srv = await openServer(0, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: path.join(tmp, 'sock') });
      srv.readable.resume();
      const play = spawnTracked('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', 'audioloop0', file]);
      await waitFor(() => daemon.status().loops[0]!.bytes > 0, 10000, 'data to flow');
      await srv.close(); // the daemon now ends paplay's stream and removes the node
      const again = await openServer(0, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: path.join(tmp, 'sock') });
      assert.equal(again.node, 'audioloop0', `round ${round}: reopened`);
      assert.equal(daemon.status().loops[0]!.state, 'waiting', 'a fresh loop, waiting for a client');
      const p = await play.done;
      assert.notEqual(p.code, 0, 'the old client was ended, not moved');
      await again.close();
    }
  });
});
