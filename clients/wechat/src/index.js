// The mini-program's library, bundled by build.mjs into miniprogram/lib/faceid.js (CommonJS):
// the web client's codec, alignment and pipeline (clients/web, one source), TF.js, and the
// mini-program's own adapters (wx.request, the model cache, pixels, page states).
export { FeatureCodec, FeatureError } from "../../web/codec.js";
export { LIMITS } from "../../web/face_core.js";
export { ApiError, createWxApi } from "./wx_api.js";
export { ModelFetchError, ModelMismatchError, ensureModels, weightBytes } from "./models.js";
export { NotImageError, imageFromFrame, orient, readPhoto } from "./pixels.js";
export { resetSession, startSession } from "./session.js";
export { MESSAGES, SHORT, enrollState, errorState, identifyState } from "./states.js";
export { startTf, tf } from "./tf.js";
