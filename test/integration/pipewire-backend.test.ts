/**
 * The native PipeWire binding against a real headless PipeWire. What every
 * backend must do (node format and direction, data bit-exact both ways,
 * START/ECONNRESET, EBUSY, client streams ended not moved, xruns, bounded
 * memory, EINVAL/EBADF) is the backend contract
 * (test/contract/backend-contract.ts, run on PipeWire by
 * backend-contract.test.ts); this file keeps what is PipeWire's own.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadNative } from '../../src/native';
import { run } from '../helpers/proc';
import { requirePipeWire } from '../helpers/soundserver';

const ROOT = path.resolve(__dirname, '..', '..', '..');

let seq = 0;
function uniqueName(): string {
  return `audioloop_t${process.pid}_${seq++}`;
}

describe('native handles close in any order (real headless PipeWire)', function () {
  this.timeout(20000);
  before(requirePipeWire);

  const streamOpts = (name: string) => ({ direction: 'sink' as const, name, format: 's16le', rate: 48000, channels: 2, ringBytes: 4096 });

  it('a stream destroyed, read and measured after its core closed; double closes; a handle of the wrong kind is EBADF', function () {
    const native = loadNative();
    const core = native.coreOpen(() => undefined, 'audioloop-test-lifetimes');
    assert.notEqual(typeof core, 'number', 'coreOpen');
    if (typeof core === 'number') return;
    const stream = native.streamCreate(core, streamOpts(uniqueName()), () => undefined);
    assert.notEqual(typeof stream, 'number', 'streamCreate');
    if (typeof stream === 'number') return;
    const cable = native.cableCreate({ direction: 'source', format: 's16le', rate: 48000, channels: 2 }, () => undefined);
    assert.notEqual(typeof cable, 'number', 'cableCreate');
    if (typeof cable === 'number') return;
    native.coreClose(core); // the parent first: the stream's node goes with it
    assert.equal(native.streamStats(stream).state, 'destroyed');
    assert.equal(native.streamRead(stream, Buffer.alloc(4)), 0, 'the ring outlives the node');
    native.streamDestroy(stream);
    native.streamDestroy(stream);
    native.coreClose(core);
    assert.equal(native.coreConnected(core), false);
    assert.deepEqual(native.coreNodes(core), []);
    assert.equal(native.streamCreate(core, streamOpts(uniqueName()), () => undefined), -9 /* EBADF */);
    // handles are type-tagged: one kind passed for another is refused, not misread
    assert.equal(native.cableStats(stream as never), -9);
    assert.equal(native.streamRead(cable as never, Buffer.alloc(4)), -9);
    assert.equal(native.coreConnected(cable as never), false);
    assert.equal(native.cableLine(cable, 'X\n'), -9, 'no fd plugged');
    native.cableClose(cable);
    native.cableClose(cable);
  });
});

describe('the PulseAudio backend is loaded only when used (real headless PipeWire)', function () {
  this.timeout(20000);
  before(requirePipeWire);

  it('a process on the PipeWire backend maps neither libpulse nor audioloop_pulse.node; backendLoadError() is null', async function () {
    // a fresh process: this mocha process may have opened the PulseAudio backend in another test
    const script = [
      "const { PipeWireBackend } = require('./dist/src/backend/pipewire');",
      "const b = new PipeWireBackend({ appName: 'audioloop-test-noload' });",
      "const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');",
      "const libs = [...new Set(maps.split('\\n').map((l) => l.split(/\\s+/)[5]).filter((p) => p && /pulse|audioloop_/.test(p)))];",
      "console.log(JSON.stringify({ libs, err: require('./dist/src/native').loadNative().backendLoadError() }));",
      'b.close();',
    ].join('\n');
    const r = await run(process.execPath, ['-e', script], { cwd: ROOT });
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { libs: string[]; err: string | null };
    assert.deepEqual(got.libs.map((p) => path.basename(p)), ['audioloop_native.node'], `mapped: ${got.libs.join(', ')}`);
    assert.equal(got.err, null);
  });
});
