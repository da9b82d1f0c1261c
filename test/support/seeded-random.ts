/**
 * Seeded random choices for the tests that make many (chaos, fuzz): the project's own generator, xoshiro128**,
 * seeded from a text by SplitMix64 over FNV-1a, as its authors recommend, so that a seed replays a run's choices.
 */
import { Xoshiro128StarStar } from "../../component/prng.js";

const MASK64 = (1n << 64n) - 1n;

/** FNV-1a, 64-bit, over the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & MASK64;
  }
  return hash;
}

/** SplitMix64 (Steele, Lea and Flood), the generator Vigna recommends for seeding xoshiro. */
export function* splitMix64(seed: bigint): Generator<bigint> {
  let state = seed & MASK64;
  for (;;) {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    yield z ^ (z >> 31n);
  }
}

/** A xoshiro128** state from a text: SplitMix64 over its FNV-1a hash. */
export function seedFromString(text: string): number[] {
  const words = splitMix64(fnv1a64(text));
  const state: number[] = [];
  for (let i = 0; i < 2; i++) {
    const word = words.next().value as bigint;
    state.push(Number(word & 0xffffffffn), Number(word >> 32n));
  }
  return state;
}

/** Choices from a seed: the same seed, the same choices. */
export class SeededRandom {
  private readonly generator: Xoshiro128StarStar;

  constructor(seed: string) {
    this.generator = new Xoshiro128StarStar(seedFromString(seed));
  }

  /** A float in [0, 1). */
  next(): number {
    return this.generator.next();
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}
