import assert from 'node:assert/strict';
import * as path from 'node:path';

describe('package entry (package.json "main")', () => {
  it('resolves to the built index and exports the public API', () => {
    const root = path.resolve(__dirname, '..', '..', '..');
    const pkg = require(path.join(root, 'package.json')) as { main: string; types: string };
    const api = require(path.join(root, pkg.main)) as Record<string, unknown>;
    for (const name of ['openServer', 'LoopServer', 'fetchStatus', 'Daemon', 'makeError', 'loadConfig', 'ConfigError', 'WavFileWriter', 'PipeWireBackend', 'SAMPLE_FORMATS']) {
      assert.ok(api[name] !== undefined, `exports ${name}`);
    }
    assert.equal(typeof api.openServer, 'function');
    assert.deepEqual(api.SAMPLE_FORMATS, ['u8', 's16le', 's24le', 's32le', 'f32le']);
  });
});
