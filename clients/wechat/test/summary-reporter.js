// One plain closing line with jest's own summary ("wechat: N passed, N failed, N skipped"),
// the form the project's CI reads for any runner (on stderr, beside jest's own summary).
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const { numPassedTests: passed, numFailedTests: failed, numPendingTests: skipped } = results;
    process.stderr.write(`wechat: ${passed} passed, ${failed} failed` +
      (skipped ? `, ${skipped} skipped` : "") + "\n");
  }
}

module.exports = SummaryReporter;
