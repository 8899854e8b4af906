// Where things are, and what the tests need before they can run.
const fs = require("fs");
const path = require("path");

const WECHAT = path.resolve(__dirname, "..", "..");
const ROOT = path.resolve(WECHAT, "..", "..");
const WEB = path.join(ROOT, "clients", "web");
const VENDOR = path.join(WEB, "vendor");
const APP = path.join(WECHAT, "miniprogram");
const LIB = path.join(APP, "lib", "faceid.js");
const FIXTURES = path.join(ROOT, "tests", "fixtures", "web");
const PERSON = ["038408", "079585", "138045"].map((n) => path.join(FIXTURES, `7363_${n}.jpg`));
const STRANGER = path.join(FIXTURES, "7284_082370.jpg");
const HINT = "run `make wechat-test` from the repository root (or `make setup web-assets`, " +
  "then `npm test` here)";

/** The interpreter that runs faceid-sdk: $FACEID_PYTHON, the repository's .venv, or python3. */
function python() {
  if (process.env.FACEID_PYTHON) return process.env.FACEID_PYTHON;
  const venv = path.join(ROOT, ".venv", "bin", "python");
  return fs.existsSync(venv) ? venv : "python3";
}

/** The faceid metadata of the FFEM-AM export the server hosts ({model_id, dim, ...}). */
function vendorModel() {
  const file = path.join(VENDOR, "ffem_am", "model.json");
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${HINT}`);
  return JSON.parse(fs.readFileSync(file, "utf8")).userDefinedMetadata.faceid;
}

function requireBuilt() {
  if (!fs.existsSync(LIB)) throw new Error(`${LIB} is missing: run \`npm run build\``);
}

module.exports = { WECHAT, ROOT, WEB, VENDOR, APP, LIB, FIXTURES, PERSON, STRANGER, HINT,
  python, vendorModel, requireBuilt };
