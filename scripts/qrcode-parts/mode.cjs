// qrcode's mode.js for the bundles: the modes' numbers and character count bits as qrcode defines them, without
// the mode detection (getBestModeForData and its regular expressions) that byte segments never ask for.
exports.NUMERIC = { id: "Numeric", bit: 1, ccBits: [10, 12, 14] };
exports.ALPHANUMERIC = { id: "Alphanumeric", bit: 2, ccBits: [9, 11, 13] };
exports.BYTE = { id: "Byte", bit: 4, ccBits: [8, 16, 16] };
exports.KANJI = { id: "Kanji", bit: 8, ccBits: [8, 10, 12] };
exports.MIXED = { bit: -1 };
exports.getCharCountIndicator = (mode, version) => mode.ccBits[version < 10 ? 0 : version < 27 ? 1 : 2];
