// The library with TF.js's webgl backend too, for the official TensorFlow.js plugin
// (`npm run build -- --webgl`; README.md): app.js hands `webgl` to plugin.configPlugin.
export * from "./index.js";
export * as webgl from "@tensorflow/tfjs-backend-webgl";
