/**
 * Hostile strings for the markup/script injection tests (test/browser/injection.test.ts). Every payload that could
 * run script if it were ever parsed as HTML calls the sentinel below instead of alert(), so execution anywhere —
 * the page itself or a frame it creates — leaves a trace in `window.__pwned` of the top-level page.
 *
 * Every entry is distinct, non-empty after trimming and at most 1,000 characters after trimming (the model's limit),
 * so every one of them must be accepted and shown, as literal text.
 */

/** Increments `__pwned` on the top-level window; from a frame, `top` is still the page under test. */
export const SENTINEL = "top.__pwned=(top.__pwned||0)+1";
/** The same, for payloads that run in a frame whose `top` might be opaque to it. */
const PARENT_SENTINEL = "parent.__pwned=(parent.__pwned||0)+1";
const S = SENTINEL;

/** The global the sentinel sets; undefined as long as nothing ran. */
export const pwned = (): number | undefined => (globalThis as unknown as { __pwned?: number }).__pwned;

/** Exactly 1,000 characters, the longest post the model accepts, packed with payloads. */
const longPayload = (() => {
  const unit = `<img src=x onerror=${S}><script>${S}</script>`;
  const body = unit.repeat(Math.floor(1000 / unit.length));
  return body + "X".repeat(1000 - body.length);
})();

export const INJECTION_CORPUS: readonly string[] = [
  // Classic <script> variants: plain, upper/mixed case, src= data URL, module, nested-tag splitting, early close.
  `<script>${S}</script>`,
  `<SCRIPT>${S}</SCRIPT>`,
  `<ScRiPt >${S}</sCrIpT >`,
  `<script src="data:text/javascript,${S}"></script>`,
  `<script type="module">${S}</script>`,
  `<scr<script>ipt>${S}</scr</script>ipt>`,
  `</script><script>${S}</script>`,
  `<script>/*</script><script>*/${S}</script>`,

  // Event-handler attributes on elements that fire without user action (error, load, focus, toggle, start).
  `<img src=x onerror=${S}>`,
  `<img src="x" onerror="${S}">`,
  `<IMG SRC=x OnErRoR=${S}>`,
  `<img/src=x/onerror=${S}>`,
  `<img src=x onerror=&#116;op.__pwned=(top.__pwned||0)+1>`,
  `<body onload=${S}>`,
  `<input autofocus onfocus=${S}>`,
  `<details open ontoggle=${S}>`,
  `<video><source onerror=${S}></video>`,
  `<audio src=x onerror=${S}>`,
  `<marquee onstart=${S}>scrolling</marquee>`,
  `<div onmouseover=${S} style="position:fixed;inset:0">hover me</div>`,

  // SVG: onload, script inside svg, SMIL onbegin, xlink javascript: href, foreignObject smuggling HTML.
  `<svg onload=${S}>`,
  `<svg><script>${S}</script></svg>`,
  `<svg><animate onbegin=${S} attributeName=x dur=1s>`,
  `<svg><a xlink:href="javascript:${S}"><text x=0 y=20>click</text></a></svg>`,
  `<svg><foreignObject><img src=x onerror=${S}></foreignObject></svg>`,

  // <iframe>: srcdoc with script and with an entity-encoded handler, src=javascript:.
  `<iframe srcdoc="<script>${PARENT_SENTINEL}</script>"></iframe>`,
  `<iframe srcdoc="&lt;img src=x onerror=${PARENT_SENTINEL}&gt;"></iframe>`,
  `<iframe src="javascript:${PARENT_SENTINEL}"></iframe>`,

  // javascript: and data: URLs in <a href>, with case, entity and whitespace obfuscation, and bare.
  `<a href="javascript:${S}">click</a>`,
  `<a href="JaVaScRiPt:${S}">click</a>`,
  `<a href="&#106;avascript:${S}">click</a>`,
  `<a href=" javascript:${S}">click</a>`,
  `<a href="data:text/html,<script>${S}</script>">click</a>`,
  `javascript:${S}`,

  // Mutation-XSS tricks through <math>, <style>, <template>, <noscript>, <svg>, <form> and raw-text elements.
  `<math><mtext><table><mglyph><style><img src=x onerror=${S}>`,
  `<math><style><img src=x onerror=${S}></style></math>`,
  `<noscript><p title="</noscript><img src=x onerror=${S}>">`,
  `<template><img src=x onerror=${S}></template>`,
  `<style><img src=x onerror=${S}></style>`,
  `<svg></p><style><a id="</style><img src=1 onerror=${S}>">`,
  `<form><math><mtext></form><form><mglyph><style></math><img src onerror=${S}>`,
  `<textarea></textarea><img src=x onerror=${S}>`,
  `<title><img src=x onerror=${S}></title>`,

  // Attribute breakouts: double, single and back quotes, JS string breakouts.
  `"><img src=x onerror=${S}>`,
  `'><img src=x onerror=${S}>`,
  `'-${S}-'`,
  `";${S};//`,
  `" onmouseover="${S}" x="`,
  `' autofocus onfocus='${S}`,
  `\`><img src=x onerror=${S}>`,

  // HTML entities that must stay entities (never decoded into markup).
  `&lt;img src=x onerror=${S}&gt;`,
  `&#60;script&#62;${S}&#60;/script&#62;`,
  `&#x3C;svg onload=${S}&#x3E;`,
  `&amp;lt;b&amp;gt;double-encoded&amp;lt;/b&amp;gt;`,
  `&nbsp;&copy;&quot;&apos;&#0;`,

  // Breakouts from the entry's own structure: <li>, <ol>, <time>, <span>, the element, comments and CDATA.
  `</li></ol><img src=x onerror=${S}>`,
  `</span></li><li part="message"><b>forged entry</b>`,
  `</ol></div><script>${S}</script>`,
  `</time><b>bold</b>`,
  `</multiuser-chat><img src=x onerror=${S}>`,
  `<!-- unterminated comment`,
  `--><img src=x onerror=${S}>`,
  `<![CDATA[<img src=x onerror=${S}>]]>`,

  // Lit and template-literal look-alikes: ${…}, {{…}}, Lit's part markers and attribute-binding prefixes.
  `\${${S}}`,
  `\`\${${S}}\``,
  `{{constructor.constructor('${S}')()}}`,
  `<!--?lit$123456789$--><img src=x onerror=${S}>`,
  `lit$123456789$<img src=x onerror=${S}>`,
  `<?lit$0$>`,
  `<div @click=\${${S}} .innerHTML="<img src=x onerror=${S}>" ?hidden=\${true}>`,
  `<template shadowrootmode="open"><img src=x onerror=${S}></template>`,

  // CSS injection: <style> that hides everything, @import, <link rel=stylesheet>, url(javascript:).
  `<style>*{display:none!important}</style>`,
  `<style>@import url("http://127.0.0.1:9/x.css");:host{background:red!important}</style>`,
  `<link rel=stylesheet href="data:text/css,*{color:red!important}">`,
  `<div style="background:url(javascript:${S})">styled</div>`,

  // Elements that change the page: <base>, <meta refresh>, <form action>, <object>, <embed>, <link rel=import>.
  `<base href="http://127.0.0.1:9/">`,
  `<meta http-equiv="refresh" content="0;url=javascript:${S}">`,
  `<form action="javascript:${S}"><button autofocus>go</button></form>`,
  `<object data="data:text/html,<script>${PARENT_SENTINEL}</script>"></object>`,
  `<embed src="data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='${PARENT_SENTINEL}'/>">`,
  `<link rel=import href="data:text/html,<script>${S}</script>">`,
  `<multiuser-chat room="hijacked"></multiuser-chat>`,

  // Unicode tricks: RTL override, zero-width characters, BOM, NUL, lone surrogates, line separators, fullwidth.
  `\u202E<img src=x onerror=${S}>`,
  `safe\u202Etxt.exe <b>rtl</b>`,
  `zero\u200Bwidth\u200C\u200Dchars\u2060<scr\u200Bipt>${S}</script>`,
  `\uFEFFbom-prefixed <img src=x onerror=${S}>`,
  `nul\u0000byte<script>${S}</script>`,
  `lone \uD800 high and \uDC00 low surrogate <b>x</b>`,
  `line\u2028separator\u2029paragraph <i>x</i>`,
  `＜script＞${S}＜/script＞`,
  `%3Cscript%3E${S}%3C%2Fscript%3E`,
  `\\u003cscript\\u003e${S}\\u003c/script\\u003e`,

  // Leading and trailing whitespace (the model trims posts).
  `   padded <b>bold</b>   `,
  `\t<i>tabbed</i>\t`,

  // Newline-laden payloads (an <input> strips CR/LF; a headless client can send them as they are).
  `line1\n<script>${S}</script>\nline3`,
  `\r\n<img\nsrc=x\r\nonerror=${S}>\r\n`,
  `<a\nhref="javascript:${S}"\n>multi\nline</a>`,

  // Commands and look-alikes: /reset with markup is just text, and so is anything that only starts like /nick.
  `/reset <img src=x onerror=${S}>`,
  `/nickname <img src=x onerror=${S}>`,

  // The longest accepted post, 1,000 characters of payloads.
  longPayload,
];
