import { css } from "lit";

/**
 * The element's styles. Each colour, the spacing and the radius go through a private property named after its public
 * `--multiuser-chat-*` one (`--_accent` for `--multiuser-chat-accent`): the dark defaults replace the light ones there,
 * and a property the page sets wins in both schemes. `--_border` is the line every border draws. scripts/build.mjs
 * minifies this CSS in the bundles.
 */
export const styles = css`
  :host {
    --_spacing: var(--multiuser-chat-spacing, 0.5rem);
    --_radius: var(--multiuser-chat-radius, 0.5rem);
    --_background: var(--multiuser-chat-background, #fff);
    --_color: var(--multiuser-chat-color, #1c1f24);
    --_muted-color: var(--multiuser-chat-muted-color, #5b6270);
    --_accent: var(--multiuser-chat-accent, #2458c6);
    --_accent-contrast: var(--multiuser-chat-accent-contrast, #fff);
    --_border-color: var(--multiuser-chat-border-color, #c8ccd4);
    --_error-color: var(--multiuser-chat-error-color, #b3261e);
    --_border: 1px solid var(--_border-color);
    /*
     * The lightness of the users' colours: one lightness and chroma in OKLCH for all of them, each user's hue apart, so
     * every colour is at least 5.5:1 against the default light background (and 8:1 against the dark one at 80%).
     */
    --_user-lightness: 48%;
    color-scheme: light dark;
    display: flex;
    flex-direction: column;
    box-sizing: border-box;
    height: var(--multiuser-chat-height, 28rem);
    background: var(--_background);
    color: var(--_color);
    font-family: var(--multiuser-chat-font-family, system-ui, sans-serif);
    font-size: var(--multiuser-chat-font-size, 1rem);
    border: var(--_border);
    border-radius: var(--_radius);
    overflow: hidden;
  }
  @media (prefers-color-scheme: dark) {
    :host {
      --_background: var(--multiuser-chat-background, #17191d);
      --_color: var(--multiuser-chat-color, #e4e7ec);
      --_muted-color: var(--multiuser-chat-muted-color, #a3aab6);
      --_accent: var(--multiuser-chat-accent, #8ab4ff);
      --_accent-contrast: var(--multiuser-chat-accent-contrast, #0d1526);
      --_border-color: var(--multiuser-chat-border-color, #3b414b);
      --_error-color: var(--multiuser-chat-error-color, #ff8a80);
      --_user-lightness: 80%;
    }
  }
  :host([hidden]),
  [hidden] {
    display: none !important;
  }
  [part="header"] {
    display: flex;
    justify-content: space-between;
    align-items: baseline;
    padding: var(--_spacing) calc(var(--_spacing) * 2);
    border-bottom: var(--_border);
  }
  h2 {
    margin: 0;
    font-size: 1em;
  }
  [part="status"],
  [part="notice"],
  [part="pending"],
  time {
    color: var(--_muted-color);
  }
  [part="status"],
  time {
    font-size: 0.85em;
  }
  .body {
    display: flex;
    flex: 1;
    min-height: 0;
  }
  [part="log"] {
    flex: 1;
    overflow-y: auto;
    padding: var(--_spacing) calc(var(--_spacing) * 2);
  }
  :focus-visible {
    outline: 2px solid var(--_accent);
    outline-offset: 2px;
  }
  ol,
  ul {
    list-style: none;
    margin: 0;
    padding: 0;
  }
  ol > li {
    margin: calc(var(--_spacing) / 2) 0;
    white-space: pre-wrap;
  }
  li,
  figure {
    overflow-wrap: anywhere;
  }
  [part="notice"] {
    font-style: italic;
  }
  a {
    color: var(--_accent);
  }
  /*
   * The colour tells users apart at a glance (USER_COLOURS in chat-model.ts); the name, in bold, always says who. Each
   * default is one lightness and chroma in OKLCH with the colour's hue.
   */
  .nickname {
    font-weight: 600;
    color: var(--_user-color, var(--_color));
  }
  .red {
    --_user-color: var(--multiuser-chat-user-red, oklch(var(--_user-lightness) 0.14 25));
  }
  .orange {
    --_user-color: var(--multiuser-chat-user-orange, oklch(var(--_user-lightness) 0.14 55));
  }
  .green {
    --_user-color: var(--multiuser-chat-user-green, oklch(var(--_user-lightness) 0.14 145));
  }
  .teal {
    --_user-color: var(--multiuser-chat-user-teal, oklch(var(--_user-lightness) 0.14 190));
  }
  .blue {
    --_user-color: var(--multiuser-chat-user-blue, oklch(var(--_user-lightness) 0.14 255));
  }
  .indigo {
    --_user-color: var(--multiuser-chat-user-indigo, oklch(var(--_user-lightness) 0.14 280));
  }
  .purple {
    --_user-color: var(--multiuser-chat-user-purple, oklch(var(--_user-lightness) 0.14 315));
  }
  .pink {
    --_user-color: var(--multiuser-chat-user-pink, oklch(var(--_user-lightness) 0.14 355));
  }
  .side {
    width: 12rem;
    display: flex;
    flex-direction: column;
    gap: var(--_spacing);
    padding: var(--_spacing);
    border-inline-start: var(--_border);
    overflow-y: auto;
  }
  .narrow {
    flex-direction: column;
  }
  .narrow .side {
    width: auto;
    flex-flow: row wrap;
    align-items: center;
    border: 0;
    border-top: var(--_border);
  }
  .narrow ul {
    display: flex;
    flex-wrap: wrap;
    gap: 0 var(--_spacing);
    flex: 1;
  }
  .narrow figure {
    flex-basis: 100%;
  }
  figure {
    margin: 0;
    text-align: center;
    font-size: 0.75em;
  }
  [part="qr"] svg {
    width: 100%;
    max-width: 10rem;
    background: var(--multiuser-chat-qr-background, #fff);
    fill: var(--multiuser-chat-qr-color, #000);
  }
  form {
    display: flex;
    gap: var(--_spacing);
    padding: var(--_spacing);
    border-top: var(--_border);
  }
  input,
  button {
    font: inherit;
    padding: var(--_spacing) calc(var(--_spacing) * 2);
    border: var(--_border);
    border-radius: var(--_radius);
    background: none;
    color: inherit;
  }
  input {
    flex: 1;
    min-width: 0;
    padding-inline: var(--_spacing);
  }
  button {
    border-color: var(--_accent);
    background: var(--_accent);
    color: var(--_accent-contrast);
  }
  [part="qr-button"],
  [part="rename-button"] {
    background: none;
    color: var(--_accent);
  }
  [part="rename-button"] {
    padding: 0 calc(var(--_spacing) / 2);
    border: 0;
    vertical-align: middle;
  }
  [part="rename-button"] svg {
    width: 1em;
    height: 1em;
    fill: currentColor;
  }
  [part="nickname-input"] {
    width: 100%;
    box-sizing: border-box;
  }
  [role="alert"] {
    margin: 0;
    padding: 0 var(--_spacing) var(--_spacing);
    color: var(--_error-color);
  }
`;
