// node:test reporter that writes the run's final counts as JSON, for scripts/test.mjs to add up.
export default async function* countReporter(source) {
  const counts = {};
  for await (const event of source) {
    if (event.type !== "test:diagnostic") continue;
    const match = /^(tests|pass|fail|skipped|todo|cancelled) (\d+)$/.exec(event.data.message);
    if (match) counts[match[1]] = Number(match[2]);
  }
  yield JSON.stringify({ passed: counts.pass ?? 0, failed: (counts.fail ?? 0) + (counts.cancelled ?? 0), skipped: (counts.skipped ?? 0) + (counts.todo ?? 0) });
}
