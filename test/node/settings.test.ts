/**
 * The deployment's settings: the table in docs/protocol.md#settings says what party/settings.ts does, and a variable
 * out of its range is refused with an error that names it, never misread.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { DEFAULT_SETTINGS, SETTINGS, settingsFromEnv } from "../../party/settings.js";

/** The rows of the settings table in docs/protocol.md, as variable → default. */
async function documentedDefaults(): Promise<Map<string, number>> {
  const protocol = await readFile(new URL("../../docs/protocol.md", import.meta.url), "utf8");
  const section = protocol.slice(protocol.indexOf("## Settings"), protocol.indexOf("\n## ", protocol.indexOf("## Settings") + 1));
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| (\d+) \|/gm)];
  return new Map(rows.map(([, variable, value]) => [variable!, Number(value)]));
}

const entries = Object.entries(SETTINGS);

describe("settings", () => {
  test("docs/protocol.md lists every variable once, with its default", async () => {
    const documented = await documentedDefaults();
    assert.deepEqual([...documented.keys()].sort(), entries.map(([, { variable }]) => variable).sort());
    for (const [, setting] of entries) assert.equal(documented.get(setting.variable), setting.default, setting.variable);
  });

  test("no variables give the defaults; a variable overrides its setting alone, and an empty one counts as unset", () => {
    assert.deepEqual(settingsFromEnv({}), DEFAULT_SETTINGS);
    assert.deepEqual(settingsFromEnv({ GRACE_MS: "", ROOM_RATE: "50" }), { ...DEFAULT_SETTINGS, roomRate: 50 });
    // Wrangler passes numbers in `vars` as numbers, PartyKit and --var as strings.
    assert.deepEqual(settingsFromEnv({ MAX_CLIENTS: 7 }), { ...DEFAULT_SETTINGS, maxClients: 7 });
  });

  for (const [key, { variable, positive, max }] of entries) {
    test(`${variable}: what it refuses, and the error names it`, () => {
      for (const bad of ["-1", "ten", "NaN", "Infinity", "1e400"]) {
        assert.throws(() => settingsFromEnv({ [variable]: bad }), new RegExp(`^Error: ${variable} must be`), `${variable}=${bad}`);
      }
      if (positive) assert.throws(() => settingsFromEnv({ [variable]: "0" }), new RegExp(`${variable} must be above zero`));
      else assert.equal(settingsFromEnv({ [variable]: "0" })[key as keyof typeof DEFAULT_SETTINGS], 0);
      if (max !== undefined) {
        assert.equal(settingsFromEnv({ [variable]: String(max) })[key as keyof typeof DEFAULT_SETTINGS], max);
        assert.throws(() => settingsFromEnv({ [variable]: String(max + 1) }), new RegExp(`${variable} must be at most ${max}`));
      }
    });
  }
});
