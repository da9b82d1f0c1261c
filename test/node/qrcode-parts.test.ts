/**
 * The parts of qrcode that the bundles replace (scripts/qrcode-parts/, see scripts/build.mjs) do what qrcode's own
 * do for everything the element asks of them: the same symbols for join links, module for module.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";
import { SeededRandom } from "../support/seeded-random.js";

const require = createRequire(import.meta.url);
type Matrix = { size: number; data: Uint8Array; get(row: number, col: number): number; set(row: number, col: number, value: boolean, reserved: boolean): void };
const BitMatrix = require("qrcode/lib/core/bit-matrix") as new (size: number) => Matrix;
const original = {
  masks: require("qrcode/lib/core/mask-pattern") as MaskPattern,
  mode: require("qrcode/lib/core/mode") as Mode,
  utils: require("qrcode/lib/core/utils") as Utils,
};
const parts = {
  masks: require("../../scripts/qrcode-parts/mask-pattern.cjs") as MaskPattern,
  mode: require("../../scripts/qrcode-parts/mode.cjs") as Mode,
  utils: require("../../scripts/qrcode-parts/utils.cjs") as Utils,
  segments: require("../../scripts/qrcode-parts/segments.cjs") as {
    fromArray(segments: { data: Uint8Array; mode: string }[]): { mode: unknown; getLength(): number }[];
  },
};
interface MaskPattern {
  applyMask(pattern: number, data: Matrix): void;
  getBestMask(data: Matrix, setupFormat: (pattern: number) => void): number;
  from(value: unknown): number | undefined;
}
interface Utils {
  getSymbolSize(version: number): number;
  getSymbolTotalCodewords(version: number): number;
  getBCHDigit(data: number): number;
}
interface Mode {
  NUMERIC: { bit: number; ccBits: number[] };
  ALPHANUMERIC: { bit: number; ccBits: number[] };
  BYTE: { bit: number; ccBits: number[] };
  KANJI: { bit: number; ccBits: number[] };
  MIXED: { bit: number };
  getCharCountIndicator(mode: unknown, version: number): number;
}

/** A symbol of `size` with random modules, a fifth of them reserved as function patterns are. */
function randomMatrix(random: SeededRandom, size: number): Matrix {
  const matrix = new BitMatrix(size);
  for (let row = 0; row < size; row++) for (let col = 0; col < size; col++) matrix.set(row, col, random.next() < 0.5, random.next() < 0.2);
  return matrix;
}

test("the mask chosen, and the symbol masked, are qrcode's for random symbols of every size a join link takes", () => {
  const random = new SeededRandom("qrcode-masks");
  for (let round = 0; round < 200; round++) {
    const size = 21 + 4 * Math.floor(random.next() * 15); // versions 1 to 15
    const [mine, theirs] = [randomMatrix(new SeededRandom(`symbol ${round}`), size), randomMatrix(new SeededRandom(`symbol ${round}`), size)];
    const formats: number[][] = [[], []];
    const best = parts.masks.getBestMask(mine, (pattern) => formats[0]!.push(pattern));
    assert.equal(
      best,
      original.masks.getBestMask(theirs, (pattern) => formats[1]!.push(pattern)),
      `round ${round}, size ${size}`,
    );
    assert.deepEqual(formats[0], formats[1]);
    parts.masks.applyMask(best, mine);
    original.masks.applyMask(best, theirs);
    assert.deepEqual(mine.data, theirs.data, "and the same masked symbol");
  }
  for (const value of [0, 7, "3", 8, -1, undefined]) assert.equal(parts.masks.from(value), original.masks.from(value), String(value));
});

test("the modes and their character count bits are qrcode's, for every version", () => {
  for (const name of ["NUMERIC", "ALPHANUMERIC", "BYTE", "KANJI"] as const) {
    assert.equal(parts.mode[name].bit, original.mode[name].bit);
    for (let version = 1; version <= 40; version++) {
      assert.equal(
        parts.mode.getCharCountIndicator(parts.mode[name], version),
        original.mode.getCharCountIndicator(original.mode[name], version),
        `${name} ${version}`,
      );
    }
  }
  assert.equal(parts.mode.MIXED.bit, original.mode.MIXED.bit);
});

test("segments are built in byte mode only, and anything else says so", () => {
  const [segment] = parts.segments.fromArray([{ data: new TextEncoder().encode("https://example.com/?room=a#key=b"), mode: "byte" }]);
  assert.equal(segment!.getLength(), 33);
  assert.throws(() => parts.segments.fromArray([{ data: new Uint8Array(1), mode: "numeric" }]), /byte mode/);
});

test("symbol sizes and codeword counts are qrcode's for every version, and so is the BCH digit count of every value it asks about", () => {
  for (let version = 1; version <= 40; version++) {
    assert.equal(parts.utils.getSymbolSize(version), original.utils.getSymbolSize(version), `size ${version}`);
    assert.equal(parts.utils.getSymbolTotalCodewords(version), original.utils.getSymbolTotalCodewords(version), `codewords ${version}`);
  }
  // Format information asks about 15 bits and version information about 18; a few beyond, and zero.
  for (let data = 0; data < 1 << 20; data++) assert.equal(parts.utils.getBCHDigit(data), original.utils.getBCHDigit(data), String(data));
});
