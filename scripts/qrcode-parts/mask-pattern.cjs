// qrcode's mask-pattern.js for the bundles, written compactly: the eight masks of the QR specification and the
// choice of the one whose symbol has the lowest penalty (N1 to N4), exactly as qrcode chooses it.
// test/node/qrcode-parts.test.ts holds it to qrcode's own.
const masks = [
  (i, j) => (i + j) % 2 === 0,
  (i) => i % 2 === 0,
  (_, j) => j % 3 === 0,
  (i, j) => (i + j) % 3 === 0,
  (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
  (i, j) => ((i * j) % 2) + ((i * j) % 3) === 0,
  (i, j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0,
  (i, j) => (((i * j) % 3) + ((i + j) % 2)) % 2 === 0,
];

exports.from = (value) => (value >= 0 && value <= 7 ? Number.parseInt(value, 10) : undefined);

exports.applyMask = (pattern, data) => {
  for (let col = 0; col < data.size; col++) {
    for (let row = 0; row < data.size; row++) if (!data.isReserved(row, col)) data.xor(row, col, masks[pattern](row, col));
  }
};

/** The penalty of a symbol: runs of five or more (N1), 2×2 blocks (N2), finder-like patterns (N3), dark balance (N4). */
function penalty(data) {
  const { size } = data;
  let points = 0;
  let dark = 0;
  for (let row = 0; row < size; row++) {
    // Along the row and down the column at once: the current run's module and length, and the last 11 modules.
    const runs = [
      [null, 0, 0],
      [null, 0, 0],
    ];
    for (let col = 0; col < size; col++) {
      [data.get(row, col), data.get(col, row)].forEach((module, line) => {
        const run = runs[line];
        if (module === run[0]) run[1]++;
        else {
          if (run[1] >= 5) points += 3 + run[1] - 5;
          run[0] = module;
          run[1] = 1;
        }
        run[2] = ((run[2] << 1) & 0x7ff) | module;
        if (col >= 10 && (run[2] === 0x5d0 || run[2] === 0x05d)) points += 40;
      });
      if (row < size - 1 && col < size - 1) {
        const block = data.get(row, col) + data.get(row, col + 1) + data.get(row + 1, col) + data.get(row + 1, col + 1);
        if (block === 4 || block === 0) points += 3;
      }
      dark += data.get(row, col);
    }
    for (const run of runs) if (run[1] >= 5) points += 3 + run[1] - 5;
  }
  return points + Math.abs(Math.ceil((dark * 100) / (size * size) / 5) - 10) * 10;
}

exports.getBestMask = (data, setupFormatFunc) => {
  let best = 0;
  let lowest = Number.POSITIVE_INFINITY;
  for (let pattern = 0; pattern < masks.length; pattern++) {
    setupFormatFunc(pattern);
    exports.applyMask(pattern, data);
    const points = penalty(data);
    exports.applyMask(pattern, data);
    if (points < lowest) {
      lowest = points;
      best = pattern;
    }
  }
  return best;
};
