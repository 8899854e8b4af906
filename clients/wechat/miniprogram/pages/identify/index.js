// Identify: a photo or a camera frame -> the pipeline on the phone -> one feature payload ->
// POST /api/v1/identify -> recognised / not recognised / not sure. (A page built with the
// Component constructor, as WeChat allows, so that miniprogram-simulate can render and drive it.)
const client = require("../../common/client.js");

const { faceid } = client;

Component({
  data: {
    ready: false, busy: true, cameraOn: false,
    state: "loading", stateText: "Loading the face models…",
    answer: "none", answerText: "", modelLine: "", metrics: "",
  },

  methods: {
    onLoad() {
      this._started = this.start();
    },

    onUnload() {
      if (this._camera) this._camera.stop();
    },

    async start() {
      try {
        this._session = await client.session();
        this.setData({ ready: true, modelLine: client.modelLine(this._session),
          metrics: client.metricsLine(this._session),
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
        const { result, refused } = await client.analyse(this._session, image, "",
          (s, t) => this.show(s, t));
        if (refused) return;
        const s = this._session;
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
      this._camera = client.cameraGrabber();
    },

    onCameraStop() {
      if (this._camera) this._camera.stop();
      this._camera = null;
      this.setData({ cameraOn: false });
    },

    onCameraError(e) {
      this.onCameraStop();
      this.show("error", "Camera unavailable: allow camera access in the mini-program's " +
        `settings, or choose a photo (${(e && e.detail && e.detail.errMsg) || "denied"}).`);
    },

    async onCapture() {
      if (!this._camera) return;
      await this.identify(() => this._camera.grab());
    },
  },
});
