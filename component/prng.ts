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
