// @web/test-runner reporter that writes the run's counts as JSON, for scripts/test.mjs to add up.
// A test file that fails to load or errors outside a test counts as one failure.
import { writeFileSync } from "node:fs";

function countSuite(suite, counts) {
  for (const test of suite.tests) {
    if (test.skipped) counts.skipped++;
    else if (test.passed) counts.passed++;
    else counts.failed++;
  }
  for (const child of suite.suites) countSuite(child, counts);
}

export function countReporter(file) {
  return {
    onTestRunFinished({ sessions }) {
      const counts = { passed: 0, failed: 0, skipped: 0 };
      for (const session of sessions) {
        if (session.testResults) countSuite(session.testResults, counts);
        if (!session.passed && (session.errors?.length ?? 0) > 0) counts.failed++;
        if (session.status !== "FINISHED") counts.failed++;
      }
      writeFileSync(file, JSON.stringify(counts));
    },
  };
}
