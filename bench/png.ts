/**
 * The bench plot as a PNG, drawn here (RGB raster, a 5x7 bitmap font,
 * deflate from node:zlib): latency p50/p99 per path on the left, CPU per
 * loop count (ours vs pw-loopback) on the right.
 */
import * as zlib from 'node:zlib';
import { f as fmt, type BenchResults } from './report';

type RGB = [number, number, number];

// 5x7 glyphs, one string of 7 rows x 5 bits per character
const GLYPHS: Record<string, string> = {
  A: '01110100011000111111100011000110001', B: '11110100011000111110100011000111110', C: '01110100011000010000100001000101110',
  D: '11110100011000110001100011000111110', E: '11111100001000011110100001000011111', F: '11111100001000011110100001000010000',
  G: '01110100011000010111100011000101111', H: '10001100011000111111100011000110001', I: '01110001000010000100001000010001110',
  J: '00111000100001000010000101001001100', K: '10001100101010011000101001001010001', L: '10000100001000010000100001000011111',
  M: '10001110111010110101100011000110001', N: '10001100011100110101100111000110001', O: '01110100011000110001100011000101110',
  P: '11110100011000111110100001000010000', Q: '01110100011000110001101011001001101', R: '11110100011000111110101001001010001',
  S: '01111100001000001110000010000111110', T: '11111001000010000100001000010000100', U: '10001100011000110001100011000101110',
  V: '10001100011000110001100010101000100', W: '10001100011000110101101011010101010', X: '10001100010101000100010101000110001',
  Y: '10001100011000101010001000010000100', Z: '11111000010001000100010001000011111',
  '0': '01110100011001110101110011000101110', '1': '00100011000010000100001000010001110', '2': '01110100010000100010001000100011111',
  '3': '11111000100010000010000011000101110', '4': '00010001100101010010111110001000010', '5': '11111100001111000001000011000101110',
  '6': '00110010001000011110100011000101110', '7': '11111000010001000100010000100001000', '8': '01110100011000101110100011000101110',
  '9': '01110100011000101111000010001001100',
  ' ': '00000000000000000000000000000000000', '.': '00000000000000000000000000110001100', '-': '00000000000000011111000000000000000',
  '>': '01000001000001000001000100010001000', '<': '00010001000100010000010000010000010', '/': '00000000010001000100010001000000000',
  '%': '11000110010001000100010001001100011', '(': '00010001000100001000010000010000010', ')': '01000001000001000010000100010001000',
  ':': '00000011000110000000011000110000000', _: '00000000000000000000000000000011111', ',': '00000000000000000000011000010001000',
  '+': '00000001000010011111001000010000000', '=': '00000000001111100000111110000000000', '?': '01110100010000100010001000000000100',
};

class Canvas {
  readonly px: Uint8Array;
  constructor(readonly w: number, readonly h: number, bg: RGB = [255, 255, 255]) {
    this.px = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) this.px.set(bg, i * 3);
  }

  rect(x: number, y: number, w: number, h: number, c: RGB): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.w, Math.round(x + w));
    const y1 = Math.min(this.h, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.px.set(c, (yy * this.w + xx) * 3);
  }

  /** Upper-case text, `scale` pixels per font pixel; returns the width drawn. */
  text(x: number, y: number, s: string, c: RGB = [0, 0, 0], scale = 2): number {
    let cx = x;
    for (const ch of s.toUpperCase()) {
      const g = GLYPHS[ch] ?? GLYPHS['?']!;
      for (let row = 0; row < 7; row++)
        for (let col = 0; col < 5; col++) if (g[row * 5 + col] === '1') this.rect(cx + col * scale, y + row * scale, scale, scale, c);
      cx += 6 * scale;
    }
    return cx - x;
  }

  png(): Buffer {
    const raw = Buffer.alloc((this.w * 3 + 1) * this.h);
    for (let y = 0; y < this.h; y++) {
      raw[y * (this.w * 3 + 1)] = 0; // filter: none
      raw.set(this.px.subarray(y * this.w * 3, (y + 1) * this.w * 3), y * (this.w * 3 + 1) + 1);
    }
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(this.w, 0);
    ihdr.writeUInt32BE(this.h, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // colour type RGB
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  }
}

let crcTable: Uint32Array | null = null;
export function crc32(buf: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

const OURS: RGB = [31, 100, 200];
const NULLSINK: RGB = [230, 120, 20];
const LOOPBACK: RGB = [40, 160, 70];
const GREY: RGB = [110, 110, 110];

function lighter(c: RGB): RGB {
  return c.map((v) => Math.round(v + (255 - v) * 0.55)) as RGB;
}

const SHORT: Record<string, string> = {
  ours_c2s_pulse: 'ours c->s pacat',
  ours_s2c_pulse: 'ours s->c parec',
  nullsink_pulse: 'null sink pacat/parec',
  pwloopback_pulse: 'pw-loopback pacat/parec',
  ours_c2s_pw: 'ours c->s pw-play',
  ours_s2c_pw: 'ours s->c pw-record',
  nullsink_pw: 'null sink pw-play/rec',
  pwloopback_pw: 'pw-loopback pw-play/rec',
};

export function renderPng(r: BenchResults): Buffer {
  const W = 1200;
  const H = 640;
  const c = new Canvas(W, H);
  c.text(16, 12, `audioloop bench ${r.date.slice(0, 16).replace('T', ' ')} (${r.mode}) - PipeWire ${r.machine.pipewire}, ${r.machine.cores} cores, quantum ${r.machine.measuredQuantum}`, [0, 0, 0], 2);

  // left: latency bars (p99 full, p50 darker part)
  const ids = Object.keys(r.latency.paths);
  const maxLat = Math.max(1, ...ids.map((id) => r.latency.paths[id]!.p99Ms).filter(Number.isFinite));
  const lx = 16;
  const labelW = 25 * 12;
  const barMax = 560 - lx - labelW - 70;
  c.text(lx, 48, 'latency ms: p50 (dark) / p99 (light)', GREY, 2);
  ids.forEach((id, i) => {
    const p = r.latency.paths[id]!;
    const y = 80 + i * 52;
    const col = id.startsWith('ours') ? OURS : id.startsWith('null') ? NULLSINK : LOOPBACK;
    c.text(lx, y + 8, SHORT[id] ?? id, [0, 0, 0], 2);
    const x0 = lx + labelW;
    const w99 = Number.isFinite(p.p99Ms) ? (p.p99Ms / maxLat) * barMax : 0;
    const w50 = Number.isFinite(p.p50Ms) ? (p.p50Ms / maxLat) * barMax : 0;
    c.rect(x0, y, w99, 30, lighter(col));
    c.rect(x0, y, w50, 30, col);
    c.text(x0 + w99 + 6, y + 8, `${fmt(p.p50Ms, 0)}/${fmt(p.p99Ms, 0)}`, [0, 0, 0], 2);
  });
  c.rect(lx + labelW - 1, 76, 2, ids.length * 52, GREY);

  // right: CPU % of one core per loop count
  const rx = 600;
  const baseY = 470;
  const plotH = 360;
  c.text(rx, 48, 'cpu % of 1 core: ours (blue) / pw-loopback (green)', GREY, 2);
  const cfgs = r.cpu.configs;
  const maxCpu = Math.max(1, ...cfgs.flatMap((k) => [k.ours.cpuPct, k.peer.cpuPct]).filter(Number.isFinite));
  cfgs.forEach((k, i) => {
    const gx = rx + 30 + i * 160;
    const ho = (k.ours.cpuPct / maxCpu) * plotH;
    const hp = (k.peer.cpuPct / maxCpu) * plotH;
    c.rect(gx, baseY - ho, 55, ho, OURS);
    c.rect(gx + 62, baseY - hp, 55, hp, LOOPBACK);
    c.text(gx, baseY - ho - 18, fmt(k.ours.cpuPct), [0, 0, 0], 2);
    c.text(gx + 62, baseY - hp - 18, fmt(k.peer.cpuPct), [0, 0, 0], 2);
    c.text(gx + 20, baseY + 10, `${k.loops} loop${k.loops > 1 ? 's' : ''}`, [0, 0, 0], 2);
  });
  c.rect(rx + 10, baseY, 480, 2, GREY);

  const e = r.exactness;
  const t = r.targets;
  c.text(16, 520, `exactness ${e.durationS}s: c->s ${e.c2s.lostFrames} lost ${e.c2s.duplicatedFrames} dup, s->c ${e.s2c.lostFrames} lost ${e.s2c.duplicatedFrames} dup`, [0, 0, 0], 2);
  c.text(16, 548, `targets: latency ${t.latency.met ? 'met' : 'not met'} (p99 over peer <= ${fmt(t.latency.targetMs, 1)} ms), cpu for 16 loops ${fmt(t.cpu.valuePct, 2)}% ${t.cpu.met ? 'met' : 'not met'} (< 5%),`, [0, 0, 0], 2);
  c.text(16, 576, `exactness ${t.exactness.met ? 'met' : 'not met'} (${t.exactness.lost} lost, ${t.exactness.duplicated} duplicated)`, [0, 0, 0], 2);
  c.text(16, 604, `load average ${r.machine.loadavg.join(' ')} (1/5/15 min)`, GREY, 2);
  return c.png();
}
