/**
 * The native registry's mirror of PipeWire Client globals, against a real
 * headless PipeWire with real clients: a peer node's app name and pid come
 * from its Client (PulseAudio-protocol clients' nodes carry no pid).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PipeWireBackend } from '../../src/backend/pipewire';
import type { Endpoint } from '../../src/backend/types';
import { wavHeader } from '../../src/wav';
import { counterPcm } from '../helpers/pcm';
import { spawnTracked, stopTracked, waitFor } from '../helpers/proc';
import { requireSoundServer } from '../helpers/soundserver';

describe('PipeWire backend: client app name and pid (real headless PipeWire)', function () {
  this.timeout(40000);
  let backend: PipeWireBackend;
  let tmp: string;
  let wav: string;
  let ep: Endpoint | null = null;

  before(requireSoundServer);
  before(function () {
    backend = new PipeWireBackend({ appName: 'audioloop-clients-test' });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-clients-'));
    wav = path.join(tmp, 'long.wav');
    const pcm = counterPcm('s16le', 2, 48000 * 10);
    fs.writeFileSync(wav, Buffer.concat([wavHeader({ format: 's16le', rate: 48000, channels: 2 }, pcm.length), pcm]));
  });
  afterEach(function () {
    ep?.destroy();
    ep = null;
  });
  after(function () {
    backend?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function sink(): { ep: Endpoint; name: string } {
    const name = `audioloop_clients_${process.pid}_${Date.now() % 100000}`;
    ep = backend.createEndpoint({ direction: 'sink', name, description: name, format: 's16le', rate: 48000, channels: 2, ringBytes: 1 << 18 });
    return { ep, name };
  }

  for (const [tool, args] of [
    ['paplay', (name: string, file: string) => ['-d', name, file]],
    ['pw-play', (name: string, file: string) => ['--target', name, file]],
  ] as const) {
    it(`${tool}: the peer shows ${tool}'s app name and the pid of the process we spawned; its Client leaves the mirror when it exits`, async function () {
      const { ep: e, name } = sink();
      await waitFor(() => backend.nodes().some((n) => n.name === name), 5000, 'our sink in the registry');
      const player = spawnTracked(tool, args(name, wav));
      const peer = await waitFor(() => e.clients().find((c) => c.pid === player.pid), 10000, `a peer with ${tool}'s pid ${player.pid}`);
      assert.ok(peer.appName, 'an app name');
      assert.match(peer.appName, tool === 'paplay' ? /^paplay$/ : /^pw-(play|cat)$/);
      const owner = backend.serverClients().find((c) => c.pid === player.pid);
      assert.ok(owner, `a Client global with pid ${player.pid}: ${JSON.stringify(backend.serverClients())}`);
      // paplay's node names its app like its Client; pw-play's node says pw-play, its Client pw-cat
      if (tool === 'paplay') assert.equal(owner.appName, 'paplay');
      else assert.match(owner.appName ?? '', /^pw-(play|cat)$/);
      // our own connection is mirrored too, with our pid
      assert.ok(backend.serverClients().some((c) => c.appName === 'audioloop-clients-test' && c.pid === process.pid));

      stopTracked(player.pid);
      await player.done;
      await waitFor(() => !backend.serverClients().some((c) => c.id === owner.id), 10000, `Client ${owner.id} to leave the mirror`);
      await waitFor(() => e.clients().length === 0, 10000, 'the peer to go');
    });
  }
});
