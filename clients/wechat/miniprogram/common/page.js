// @ts-check
// What the Identify and Enroll pages share: per-instance state kept outside `data`, start-up
// (the shared client, then the page's own ready line), and the camera's start, stop and error
// handlers. Spread into a page's `methods`.
const client = require("./client.js");

const { faceid } = client;

/** What a page instance keeps outside its data (never rendered, never in setData): the
 * client session, the camera grabber and, on the enroll page, the accepted vectors. */
const own = new WeakMap();

/** @param {object} page */
function mine(page) {
  if (!own.has(page)) own.set(page, { session: null, camera: null, samples: [] });
  return own.get(page);
}

/**
 * The shared methods. `readyText`: the state line once the models are loaded; `readyData`:
 * more data for the page from the session (e.g. the enroll limit); `photoWord`: "a photo" or
 * "photos", for the camera error.
 * @param {{readyText: string, photoWord: string, readyData?: (session: any) => object}} options
 */
function pageMethods({ readyText, photoWord, readyData = () => ({}) }) {
  return {
    onLoad() {
      this.start();
    },

    onUnload() {
      if (mine(this).camera) mine(this).camera.stop();
    },

    async start() {
      try {
        const session = (mine(this).session = await client.session());
        this.setData({ ready: true, modelLine: client.modelLine(session),
          metrics: client.metricsLine(session), ...readyData(session),
          state: "ready", stateText: readyText });
      } catch (error) {
        const [state, text] = faceid.errorState(error);
        this.setData({ state, stateText: `Could not start: ${text}` });
      } finally {
        this.setData({ busy: false });
      }
    },

    show(state, stateText) {
      this.setData({ state, stateText });
    },

    onCameraStart() {
      this.setData({ cameraOn: true });
      mine(this).camera = client.cameraGrabber();
    },

    onCameraStop() {
      if (mine(this).camera) mine(this).camera.stop();
      mine(this).camera = null;
      this.setData({ cameraOn: false });
    },

    onCameraError(e) {
      this.onCameraStop();
      this.show("error", "Camera unavailable: allow camera access in the mini-program's " +
        `settings, or choose ${photoWord} (${(e && e.detail && e.detail.errMsg) || "denied"}).`);
    },
  };
}

module.exports = { mine, pageMethods };
