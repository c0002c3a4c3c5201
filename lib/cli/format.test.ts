import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../test/helpers';
import { writeJson } from './format';

/** A random value of every kind JSON.stringify treats apart: holes, undefined, functions, Dates, toJSON, odd keys. */
function randomValue(random: () => number, depth: number): unknown {
  const pick = Math.floor(random() * (depth > 4 ? 7 : 11));
  const text = () => ['', 'a', 'line\nbreak', '"quoted"', 'ü', '\u2028', 'tab\tx'][Math.floor(random() * 7)];
  switch (pick) {
    case 0: return Math.floor(random() * 1e6) - 5e5;
    case 1: return text();
    case 2: return random() < 0.5;
    case 3: return null;
    case 4: return undefined;
    case 5: return () => 1;
    case 6: return new Date(Math.floor(random() * 2e12));
    case 7: {
      const items = Array.from({ length: Math.floor(random() * 5) }, () => randomValue(random, depth + 1));
      if (random() < 0.2) items.length += 2; // holes
      return items;
    }
    case 8: {
      const form = randomValue(random, depth + 1);
      return { toJSON: () => form };
    }
    default: return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, (_, i) => [i % 2 ? text() + i : `k${i}`, randomValue(random, depth + 1)]));
  }
}

describe('writeJson', () => {
  it('writes exactly what JSON.stringify(value, null, 2) makes, for random values at every walk depth (seeded)', () => {
    const kinds = new Set<string>();
    for (let seed = 1; seed <= 400; seed++) {
      // Small seeds start xorshift on small numbers: spread them, and skip its first outputs.
      const random = seededRandom((seed * 2654435761) >>> 0);
      for (let i = 0; i < 8; i++) random();
      const value = randomValue(random, 0);
      const expected = JSON.stringify(value, null, 2);
      for (const depth of [0, 1, 3, 8]) {
        let written = '';
        writeJson(value, (text) => { written += text; }, depth);
        expect(written, `seed ${seed}, depth ${depth}`).toBe(expected === undefined ? '' : `${expected}\n`);
      }
      kinds.add(Array.isArray(value) ? 'array' : typeof value);
    }
    expect([...kinds].sort()).toEqual(['array', 'boolean', 'function', 'number', 'object', 'string', 'undefined']);
  });

  // Found by an adversarial review: toJSON's key, an array's own toJSON, and kinds JSON.stringify treats apart.
  const cases: [string, unknown][] = [
    ['toJSON is given its key', { a: { b: { toJSON: (key: string) => `key=${key}` } }, list: [{ toJSON: (key: string) => `at ${key}` }] }],
    ["an array's own toJSON", { a: Object.assign([1, 2], { toJSON: () => 'x' }) }],
    ['numbers', { a: [-0, NaN, Infinity, 1e21, 0.1] }],
    ['numeric keys first', { b: 1, 2: 'x', 1: 'y', a: [{ 10: 1, 9: 2 }] }],
    ['odd strings and keys', { 'k\n\u2028': 'a\u2029b\ud800c\u0000', e: '' }],
    ['class instances, Map, Set', { c: new (class X { y = 1; })(), m: new Map([[1, 2]]), s: new Set([1]) }],
    ['nested empties', [[[[]]], [[{}]], [[{ a: undefined }]]]],
    ['symbols, functions, undefined', { s: Symbol('x'), f: () => 1, u: undefined, arr: [Symbol('y'), undefined, () => 2] }],
    ['boxed primitives', { n: new Number(3), s: new String('q'), b: new Boolean(false) }],
    ['dates, invalid too', { d: new Date(0), dd: [new Date(NaN)] }],
    ['toJSON giving undefined', { a: { toJSON: () => undefined }, b: [{ toJSON: () => undefined }] }],
    ['a null prototype', Object.assign(Object.create(null), { a: 1 })],
    ['a top-level string', 'x\ny'], ['top-level null', null], ['a top-level empty array', []], ['a top-level toJSON', { toJSON: (key: string) => ({ key }) }],
  ];
  it.each(cases)('%s: as JSON.stringify at every walk depth', (_, value) => {
    for (const depth of [0, 1, 2, 3, 10]) {
      let written = '';
      writeJson(value, (text) => { written += text; }, depth);
      expect(written).toBe(`${JSON.stringify(value, null, 2)}\n`);
    }
  });

  it('a BigInt throws the TypeError JSON.stringify throws', () => {
    expect(() => writeJson({ a: 1, b: [1n] }, () => undefined)).toThrow(TypeError);
  });

  it('writes a large report in pieces, none of them the whole', () => {
    const report = { backups: Array.from({ length: 20_000 }, (_, i) => ({ vm: `vm${i}`, disks: [{ path: `/pool/vm${i}.qcow2`, bytesRead: i }] })) };
    const pieces: string[] = [];
    writeJson(report, (text) => pieces.push(text));
    expect(pieces.join('')).toBe(`${JSON.stringify(report, null, 2)}\n`);
    expect(pieces.length).toBeGreaterThan(20);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(80 * 1024);
  });
});
