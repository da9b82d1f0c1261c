// qrcode's utils.js for the bundles: symbol sizes, codeword counts and the BCH digit count as qrcode computes them,
// without the Kanji hooks (setToSJISFunction, isKanjiModeEnabled, toSJIS) that byte segments never reach, and
// without the range checks on a version qrcode chose itself.
const CODEWORDS_COUNT = [
  0, 26, 44, 70, 100, 134, 172, 196, 242, 292, 346, 404, 466, 532, 581, 655, 733, 815, 901, 991, 1085, 1156, 1258, 1364, 1474, 1588, 1706, 1828, 1921, 2051,
  2185, 2323, 2465, 2611, 2761, 2876, 3034, 3196, 3362, 3532, 3706,
];
exports.getSymbolSize = (version) => version * 4 + 17;
exports.getSymbolTotalCodewords = (version) => CODEWORDS_COUNT[version];
exports.getBCHDigit = (data) => 32 - Math.clz32(data);
