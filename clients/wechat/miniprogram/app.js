// @ts-check
// The API key comes the way the web page gets it from its URL fragment: in the launch query
// (a QR code or link made by the enrollment desk, `?key=fidk_...`), kept in local storage and
// sent only as `Authorization: Bearer`. It is never part of the code package.
const config = require("./config.js");
const faceid = require("./lib/faceid.js");

App({
  onLaunch(options) {
    const key = options && options.query && options.query.key;
    if (key) wx.setStorageSync("faceid-key", key);
    if (config.backend === "webgl") {
      // The official TensorFlow.js plugin (app.json "plugins", README.md) gives TF.js a WebGL
      // canvas; models still come from the cache (lib's loader), so its fetch is not used.
      // eslint-disable-next-line no-undef
      const plugin = requirePlugin("tfjsPlugin");
      plugin.configPlugin({
        fetchFunc: () => () => Promise.reject(new Error("models load through the cache")),
        tf: faceid.tf,
        webgl: faceid.webgl,
        canvas: wx.createOffscreenCanvas({ type: "webgl" }),
      });
    }
  },
});
