// qrcode's segments.js for the bundles: the element gives it one segment in byte mode, so only that is built.
const ByteData = require("qrcode/lib/core/byte-data");

const unused = () => {
  throw new Error("qrcode's segmentation is not bundled: give it segments in byte mode");
};
exports.fromArray = (segments) => segments.map(({ data, mode }) => (mode === "byte" ? new ByteData(data) : unused()));
exports.fromString = exports.rawSplit = unused;
