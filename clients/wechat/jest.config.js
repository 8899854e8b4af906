// jest + miniprogram-simulate (jsdom). No transform: the pages and the built bundle run as
// they would in WeChat (CommonJS), not through Babel.
module.exports = {
  testEnvironment: "jsdom",
  transform: {},
  roots: ["<rootDir>/test"],
  testTimeout: 300000,
  maxWorkers: 1,
  verbose: true,
  reporters: ["default", "<rootDir>/test/summary-reporter.js"],
};
