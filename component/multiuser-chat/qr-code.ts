import { html } from "lit";
import { create as createQrCode } from "qrcode/lib/core/qrcode.js";

/** Modules of white space around the code, as the QR standard asks. */
const QUIET_ZONE = 4;

/**
 * `text` as a QR code: one SVG path of the dark modules, drawn with a Lit template (no markup strings). Colours come
 * from the element's CSS.
 */
export function qrCode(text: string) {
  // One segment in byte mode: a URL needs no other, and the build leaves qrcode's other modes out of the bundle.
  const { modules } = createQrCode([{ data: new TextEncoder().encode(text), mode: "byte" }], { errorCorrectionLevel: "M" });
  const size = modules.size + QUIET_ZONE * 2;
  let path = "";
  for (let row = 0; row < modules.size; row++) {
    for (let column = 0; column < modules.size; ) {
      let run = 0;
      while (column + run < modules.size && modules.get(row, column + run)) run++;
      if (run > 0) path += `M${column + QUIET_ZONE} ${row + QUIET_ZONE}h${run}v1h-${run}z`;
      column += run + 1;
    }
  }
  return html`
    <svg viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" aria-hidden="true">
      <path d=${path}></path>
    </svg>
  `;
}
