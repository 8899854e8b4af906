// Rendering and driving the mini-program's pages with miniprogram-simulate (jsdom), the way a
// person would: tap buttons that are enabled, type into inputs, wait for the page to settle.
const path = require("path");
const jComponent = require("j-component");
const simulate = require("miniprogram-simulate");
const { APP } = require("./paths");

// WeChat's <button> and <input> with the properties the real ones have, so that a test sees
// what a person could tap (miniprogram-simulate's built-ins take none).
jComponent.register({ id: "button", tagName: "wx-button", template: "<slot/>",
  properties: { disabled: { type: Boolean, value: false }, type: String } });
jComponent.register({ id: "input", tagName: "wx-input", template: "<slot/>",
  properties: { value: String, placeholder: String, maxlength: Number } });

const loaded = {};
const settle = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/** A fresh instance of pages/<name>/index, attached and started as WeChat starts a page
 * (onLoad), resolved once it has loaded or refused to. */
async function openPage(name, query = {}) {
  // The official WXML compiler (miniprogram-compiler's wcc) compiles the page's template.
  loaded[name] ??= simulate.load(path.join(APP, "pages", name, "index"), { rootPath: APP });
  const page = simulate.render(loaded[name]);
  page.attach(document.createElement("parent-wrapper"));
  page.instance.onLoad(query);
  const deadline = Date.now() + 120000;
  while (page.data.state === "loading" || page.data.busy) {
    if (Date.now() > deadline) throw new Error(`pages/${name} did not finish loading`);
    await settle();
  }
  return page;
}

function element(page, selector) {
  const el = page.querySelector(selector);
  if (!el) throw new Error(`${selector} is not on the page`);
  return el;
}

/** Tap `selector`; throws if it is not there or disabled (a person could not tap it). */
function tap(page, selector) {
  const el = element(page, selector);
  if (el.instance?.data?.disabled) throw new Error(`${selector} is disabled`);
  el.dispatchEvent("tap");
}

function type(page, selector, value) {
  element(page, selector).dispatchEvent("input", { detail: { value } });
}

/** Tap `selector`, wait until the page is idle again with a new state; that state. */
async function act(page, selector, timeoutMs = 120000) {
  page.instance.setData({ state: "test-pending" });
  tap(page, selector);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await settle();
    if (!page.data.busy && page.data.state !== "test-pending") return page.data.state;
    if (Date.now() > deadline) throw new Error(`${selector}: the page did not settle`);
  }
}

/** The state line: {state, text} as rendered. */
function stateOf(page) {
  const el = element(page, "#state");
  return { state: el.dom.getAttribute("data-state"), text: el.dom.textContent };
}

module.exports = { openPage, tap, type, act, stateOf, element, settle };
