// Where this mini-program finds its faceid-sdk server, and how it runs TF.js. The server's
// https:// domain must be in the mini-program's "request" and "downloadFile" domain lists
// (mp.weixin.qq.com: Development > Development settings > Server domain); in WeChat DevTools
// "Do not verify domains" lets a development build reach http://127.0.0.1:8000.
module.exports = {
  server: "http://127.0.0.1:8000",
  // null: TF.js's cpu backend (bundled, needs nothing). "webgl": the official TensorFlow.js
  // plugin's backend, after adding the plugin and building with `npm run build -- --webgl`
  // (README.md).
  backend: null,
  // A picked photo is read at most this many pixels on its longer side.
  maxPhotoSide: 1280,
};
