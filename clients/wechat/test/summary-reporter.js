// One plain closing line after jest's own summary ("wechat: N passed, N failed, N skipped"),
// the form the project's CI reads for any runner (on stderr, after jest's summary there).
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const { numPassedTests: passed, numFailedTests: failed, numPendingTests: skipped } = results;
    process.stderr.write(`wechat: ${passed} passed, ${failed} failed` +
      (skipped ? `, ${skipped} skipped` : "") + "\n");
  }
}

module.exports = SummaryReporter;
