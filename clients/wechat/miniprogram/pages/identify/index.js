// @ts-check
// Identify: a photo or a camera frame -> the pipeline on the phone -> one feature payload ->
// POST /api/v1/identify -> recognised / not recognised / not sure. (A page built with the
// Component constructor, as WeChat allows, so that miniprogram-simulate can render and drive it.)
const client = require("../../common/client.js");
const { mine, pageMethods } = require("../../common/page.js");

const { faceid } = client;

Component({
  data: {
    ready: false, busy: true, cameraOn: false,
    state: "loading", stateText: "Loading the face models…",
    answer: "none", answerText: "", modelLine: "", metrics: "",
  },

  methods: {
    ...pageMethods({
      readyText: "Ready: identify a photo, or start the camera.", photoWord: "a photo",
    }),

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

    async onCapture() {
      if (!mine(this).camera) return;
      await this.identify(() => mine(this).camera.grab());
    },
  },
});
