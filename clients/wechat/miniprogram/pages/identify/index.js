// @ts-check
// Identify: a photo or a camera frame -> the pipeline on the phone -> one feature payload ->
// POST /api/v1/identify -> recognised / not recognised / not sure. (A page built with the
// Component constructor, as WeChat allows, so that miniprogram-simulate can render and drive it.)
const client = require("../../common/client.js");

const { faceid } = client;

/** What a page instance keeps outside its data (never rendered, never in setData): the
 * client, the camera grabber and, on the enroll page, the accepted vectors. */
const own = new WeakMap();
const mine = (page) => {
  if (!own.has(page)) own.set(page, { session: null, camera: null, samples: [] });
  return own.get(page);
};

Component({
  data: {
    ready: false, busy: true, cameraOn: false,
    state: "loading", stateText: "Loading the face models…",
    answer: "none", answerText: "", modelLine: "", metrics: "",
  },

  methods: {
    onLoad() {
      this.start();
    },

    onUnload() {
      if (mine(this).camera) mine(this).camera.stop();
    },

    async start() {
      try {
        mine(this).session = await client.session();
        this.setData({ ready: true, modelLine: client.modelLine(mine(this).session),
          metrics: client.metricsLine(mine(this).session),
          state: "ready", stateText: "Ready: identify a photo, or start the camera." });
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

    async identify(getImage) {
      this.setData({ busy: true, answer: "none", answerText: "" });
      const t0 = Date.now();
      try {
        const image = await getImage();
        if (!image) return;
        const { result, refused } = await client.analyse(mine(this).session, image, "",
          (s, t) => this.show(s, t));
        if (refused) return;
        const s = mine(this).session;
        const text = s.codec.encodeText(result.vector);
        const t1 = Date.now();
        const answer = await s.api.identify(text,
          { challengeRequired: s.server.challenge_required });
        result.timings.http = Date.now() - t1;
        result.timings.total = Date.now() - t0;
        const [state, stateText, answerText] = faceid.identifyState(answer);
        this.setData({ state, stateText, answer: state, answerText,
          metrics: client.metricsLine(s, result.timings) });
      } catch (error) {
        const [state, text] = faceid.errorState(error);
        this.show(state, text);
      } finally {
        this.setData({ busy: false });
      }
    },

    async onChoose() {
      await this.identify(async () => {
        const [path] = await client.choosePhotos(1);
        if (!path) {
          this.show("ready", "No photo chosen.");
          return null;
        }
        return client.readPhoto(path, "", (s, t) => this.show(s, t));
      });
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
        `settings, or choose a photo (${(e && e.detail && e.detail.errMsg) || "denied"}).`);
    },

    async onCapture() {
      if (!mine(this).camera) return;
      await this.identify(() => mine(this).camera.grab());
    },
  },
});
