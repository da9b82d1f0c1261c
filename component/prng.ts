/**
 * xoshiro128** 1.1 (Blackman and Vigna, 2018): a small, fast 32-bit generator with 128 bits of state.
 * Every replica seeds it identically and draws from it in the same order, so every replica gets the same numbers.
 */
export class Xoshiro128StarStar {
  private readonly s: Uint32Array;

  constructor(state: readonly number[]) {
    if (state.length !== 4 || state.every((word) => word === 0)) throw new Error("xoshiro128** needs four 32-bit words, not all zero");
    this.s = Uint32Array.from(state);
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** A float in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** The state, for serialization. */
  get state(): number[] {
    return [...this.s];
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

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

/** The initial xoshiro128** state for a session: SplitMix64 over the FNV-1a hash of the session id. */
export function seedFromString(text: string): number[] {
  const words = splitMix64(fnv1a64(text));
  const state: number[] = [];
  for (let i = 0; i < 2; i++) {
    const word = words.next().value as bigint;
    state.push(Number(word & 0xffffffffn), Number(word >> 32n));
  }
  return state;
}
